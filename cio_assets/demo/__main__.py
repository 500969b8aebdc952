from cio_assets.demo.run import main

main()
