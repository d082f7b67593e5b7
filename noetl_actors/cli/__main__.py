from noetl_actors.cli import main

main()
