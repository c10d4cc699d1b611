from mambapoc.cli import main

main()
