import MeridianCLI

await MeridianCommand.launch()
