from authgres.cli import main

main()
