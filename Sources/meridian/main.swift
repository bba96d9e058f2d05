import MeridianCLI

MeridianCommand.main()
