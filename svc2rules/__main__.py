from svc2rules.cli import main

main()
