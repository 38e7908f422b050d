from hueyd.cli.hueyd import main

main()
