from community_ade.cli import main

main()
