from llamactl.entry import main

main()
