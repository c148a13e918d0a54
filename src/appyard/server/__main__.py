from appyard.server.main import main

main()
