from leadready.cli import main

main()
