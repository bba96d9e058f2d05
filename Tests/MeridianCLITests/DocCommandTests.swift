import ArgumentParser
import Foundation
import Testing
@testable import MeridianCLI

/// Every `meridian …` command in docs/ and the README parses with the real
/// command-line parser, and every documented command is run somewhere: by
/// scripts/walkthrough (which CI runs) or by a test named in `runBy`. So a
/// renamed option or a command nobody runs any more fails here, not in a
/// newcomer's shell. Pure: nothing is started, no host contacted.
@Suite struct DocCommandTests {
    /// Documented commands the walkthrough does not run, and the test that runs each through the built binary.
    static let runBy: [String: String] = [
        "--version": "ApplyLoggingTests.versionIsPrinted",
        "help": "DocCommandTests.everyDocumentedCommandParses",
        "audit list": "CommandPathTests.regionsParallelismAuditAndUnlock",
        "unlock": "CommandPathTests.regionsParallelismAuditAndUnlock",
        "bundle": "ValidateGoldenTests.routesAndBundleMatchGolden",
        "routes show": "ValidateGoldenTests.routesAndBundleMatchGolden",
        "drift history": "DriftCommandTests.reportsPrometheusWebhookAndHistory",
        "trust": "HostsCommandTests.unknownHostsAreRefusedUntilTrusted",
        "rollout promote": "RolloutIntegrationTests.wavesRunInOrderAndAnApprovalWaitsForPromote",
        "rollout rollback": "RolloutIntegrationTests.blueGreenSwitchesAfterHealthAndSmokeKeepsTheOldSlotForTheGraceAndRollsBackOnCommand",
        "rollout resume": "TrafficRolloutTests.aCanaryKilledAtEachStepOrCutOffFromAHostConvergesAndTheGatewayNeverServesADeadSlot",
        "rollout abort": "TrafficRolloutTests.statusShowsACanaryInProgressWithItsStepAndLastAnalysisAndAbortEndsIt",
        "state migrate": "PostgresStateCLITests.stateMigrateMovesTheFleetsSQLiteStoreIntoPostgres",
        "sandbox status": "SandboxTests.upRunsEveryHostAndDownLeavesNothingRunning",
        "sandbox down": "SandboxTests.upRunsEveryHostAndDownLeavesNothingRunning",
    ]

    /// One `meridian …` line of a document: where it is and its words after `meridian`.
    struct DocumentedCommand: CustomStringConvertible {
        var place: String
        var text: String
        var words: [String]
        /// A synopsis (`[--region R]…`, `up|down`) or a mention in prose (`meridian trust`) names a
        /// command and options; it is not one whole command line, so it is not parsed as one.
        var isSynopsis: Bool
        var description: String { "\(place): meridian \(text)" }
    }

    static func documents() throws -> [(name: String, text: String)] {
        let docs = CLI.repositoryRoot.appendingPathComponent("docs")
        let names = try FileManager.default.contentsOfDirectory(atPath: docs.path).filter { $0.hasSuffix(".md") }.sorted()
        return try names.map { ("docs/\($0)", try String(contentsOf: docs.appendingPathComponent($0), encoding: .utf8)) }
            + [("README.md", try String(contentsOf: CLI.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8))]
    }

    /// Fenced lines that start with `meridian` (after an optional `$ `): whole command lines, unless
    /// written as a synopsis; and inline code spans that do: mentions.
    static func commands(in text: String, name: String) -> [DocumentedCommand] {
        var found: [DocumentedCommand] = []
        var fenced = false
        for (index, line) in text.components(separatedBy: "\n").enumerated() {
            let place = "\(name):\(index + 1)"
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("```") {
                fenced.toggle()
                continue
            }
            if fenced {
                var command = line.trimmingCharacters(in: .whitespaces)
                if command.hasPrefix("$ ") { command.removeFirst(2) }
                if command == "meridian" || command.hasPrefix("meridian ") { found.append(parse(command, place: place)) }
            } else {
                for span in line.components(separatedBy: "`").enumerated().filter({ $0.offset % 2 == 1 }).map(\.element)
                where span.hasPrefix("meridian ") {
                    var mention = parse(span.replacingOccurrences(of: "\\|", with: "|").trimmingCharacters(in: CharacterSet(charactersIn: "\\")), place: place)
                    mention.isSynopsis = true
                    found.append(mention)
                }
            }
        }
        return found
    }

    /// Splits a shell line into words (quotes respected), up to a comment, pipe, redirection or `;`/`&&`.
    static func parse(_ line: String, place: String) -> DocumentedCommand {
        var words: [String] = []
        var word = ""
        var quote: Character?
        var inWord = false
        scan: for character in line {
            if let open = quote {
                if character == open { quote = nil } else { word.append(character) }
                continue
            }
            switch character {
            case "'", "\"":
                quote = character
                inWord = true
            case " ", "\t":
                if inWord { words.append(word) }
                word = ""
                inWord = false
            case "#" where !inWord, ">" where !inWord, ";":
                break scan
            default:
                word.append(character)
                inWord = true
            }
        }
        if inWord { words.append(word) }
        if let cut = words.firstIndex(where: { $0 == "|" || $0 == "&&" || $0 == "||" }) { words = Array(words[..<cut]) }
        let rest = Array(words.dropFirst())
        let synopsis = rest.contains { $0.contains("[") || $0.contains("…") || $0.contains("|") || $0.contains("...") }
        return DocumentedCommand(place: place, text: rest.joined(separator: " "), words: rest, isSynopsis: synopsis)
    }

    static func name(of command: ParsableCommand.Type) -> String {
        command.configuration.commandName ?? command._commandName
    }

    /// The command path the words name (`routes` alone is `routes show`, its default), its type,
    /// and the words after the ones that named it.
    static func resolve(_ words: [String]) -> (path: [String], command: ParsableCommand.Type, rest: [String]) {
        var path: [String] = []
        var command: ParsableCommand.Type = MeridianCommand.self
        var consumed = 0
        for word in words {
            guard let next = command.configuration.subcommands.first(where: { name(of: $0) == word }) else { break }
            path.append(word)
            command = next
            consumed += 1
        }
        let rest = Array(words.dropFirst(consumed))
        // `sandbox up|down|status` names several subcommands: no default is implied.
        if rest.first.map({ $0.contains("|") && !$0.hasPrefix("-") }) == true { return (path, command, rest) }
        while let fallback = command.configuration.defaultSubcommand {
            path.append(name(of: fallback))
            command = fallback
        }
        return (path, command, rest)
    }

    /// Every command path one documented line names: one, or one per alternative of `up|down|status`.
    static func paths(_ documented: DocumentedCommand) -> [String] {
        let words = documented.words
        if words.first == "help" { return ["help"] }
        if words.first == "COMMAND" || words.isEmpty { return words.contains("--version") ? ["--version"] : [] }
        let (path, command, rest) = resolve(words)
        if words == ["--version"] { return ["--version"] }
        if let alternatives = rest.first, alternatives.contains("|"), !alternatives.hasPrefix("-") {
            return alternatives.split(separator: "|").map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }
                .filter { name in command.configuration.subcommands.contains { self.name(of: $0) == name } }
                .map { (path + [$0]).joined(separator: " ") }
        }
        // A group named alone (`meridian sandbox`) is run when its subcommands are.
        if rest.isEmpty, !command.configuration.subcommands.isEmpty, command.configuration.defaultSubcommand == nil, !path.isEmpty,
           documented.isSynopsis {
            return []
        }
        return path.isEmpty ? [] : [path.joined(separator: " ")]
    }

    nonisolated(unsafe) static var helpTexts: [ObjectIdentifier: String] = [:]
    static let helpLock = NSLock()

    /// The command's full help, where every option it takes is named (made once per command).
    static func helpText(_ command: ParsableCommand.Type) -> String {
        helpLock.withLock {
            if let known = helpTexts[ObjectIdentifier(command)] { return known }
            let text = MeridianCommand.helpMessage(for: command, includeHidden: true, columns: 10_000)
            helpTexts[ObjectIdentifier(command)] = text
            return text
        }
    }

    /// The problem with one documented command, or nil when it parses (or, a synopsis, names only what exists).
    static func problem(_ documented: DocumentedCommand) -> String? {
        if documented.words.first == "help" {
            // swift-argument-parser's own `help COMMAND`.
            let topic = documented.words.dropFirst().first.map { $0 == "COMMAND" ? "plan" : $0 } ?? "plan"
            return resolve([topic]).path.isEmpty ? "help names no command \(topic)" : nil
        }
        var (path, command, rest) = resolve(documented.words)
        // `sandbox up|down|status`: each alternative is a subcommand.
        if let alternatives = rest.first, alternatives.contains("|"), !alternatives.hasPrefix("-") {
            let names = alternatives.split(separator: "|").map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }.filter { !$0.hasPrefix("-") }
            let known = command.configuration.subcommands.map(name(of:))
            if let unknown = names.first(where: { !known.contains($0) }) { return "\(path.joined(separator: " ")) has no subcommand \(unknown)" }
            return nil
        }
        if documented.isSynopsis || rest.first == "COMMAND" {
            if rest.first == "COMMAND" { (path, command, rest) = ([], MeridianCommand.self, Array(rest.dropFirst())) }
            let help = helpText(command)
            for word in rest {
                for option in word.components(separatedBy: CharacterSet(charactersIn: "[]|…")) where option.hasPrefix("--") {
                    let flag = option.components(separatedBy: "=")[0]
                    if !help.contains(flag + " ") && !help.contains(flag + "\n") && !help.contains(flag + ",") && !help.contains(flag + "]") {
                        return "`meridian \(path.joined(separator: " "))` has no option \(flag)"
                    }
                }
            }
            if let first = rest.first, !first.hasPrefix("-"), !first.hasPrefix("["), first.lowercased() == first, command.configuration.subcommands.isEmpty == false {
                return "`meridian \(path.joined(separator: " "))` has no subcommand \(first)"
            }
            return nil
        }
        do {
            _ = try MeridianCommand.parseAsRoot(documented.words)
            return nil
        } catch {
            // `--version` and `--help` end parsing with a clean exit.
            if MeridianCommand.exitCode(for: error).rawValue == 0 { return nil }
            return MeridianCommand.message(for: error)
        }
    }

    @Test func everyDocumentedCommandParses() throws {
        var commands: [DocumentedCommand] = []
        for document in try Self.documents() { commands += Self.commands(in: document.text, name: document.name) }
        #expect(commands.count > 100, "too few commands found in docs/ and README.md: \(commands.count)")
        #expect(commands.contains { !$0.isSynopsis } && commands.contains(where: \.isSynopsis))
        for command in commands {
            if let problem = Self.problem(command) { Issue.record("\(command): \(problem)") }
        }
        // The checks themselves catch rot.
        #expect(Self.problem(Self.parse("meridian status --times 2", place: "t")) != nil, "--times without --watch parsed")
        #expect(Self.problem(Self.parse("meridian plna", place: "t")) != nil)
        #expect(Self.problem(Self.parse("meridian drift [--regoin R]…", place: "t")) != nil)
        #expect(Self.problem(Self.parse("meridian sandbox up|dwon", place: "t")) != nil)
        #expect(Self.problem(Self.parse("meridian routes verify --region eu-west --format json", place: "t")) == nil)
        #expect(Self.resolve(["routes"]).path == ["routes", "show"] && Self.resolve(["drift", "--remediate"]).path == ["drift"])
    }

    /// Every relative link, and every `docs/NAME.md` named in the text, points at a file that exists.
    @Test func everyLinkedDocumentExists() throws {
        let root = CLI.repositoryRoot
        var checked = 0
        for document in try Self.documents() {
            let folder = document.name.hasPrefix("docs/") ? root.appendingPathComponent("docs") : root
            var targets: [(String, URL)] = []
            for match in document.text.matches(of: /\]\(([^)#\s]+)(#[^)]*)?\)/) where !match.1.contains("://") {
                targets.append((String(match.1), folder.appendingPathComponent(String(match.1))))
            }
            for match in document.text.matches(of: /docs\/[a-z0-9-]+\.md/) {
                targets.append((String(match.0), root.appendingPathComponent(String(match.0))))
            }
            for (written, url) in targets where !FileManager.default.fileExists(atPath: url.path) {
                Issue.record("\(document.name) links to \(written), which does not exist")
            }
            checked += targets.count
        }
        #expect(checked > 50, "only \(checked) links found")
    }

    /// The command paths scripts/walkthrough runs (`run N …` and `run_to FILE N …` lines).
    static func walkthroughPaths() throws -> Set<String> {
        let script = try String(contentsOf: CLI.repositoryRoot.appendingPathComponent("scripts/walkthrough"), encoding: .utf8)
        var paths = Set<String>()
        for line in script.components(separatedBy: "\n") {
            let words = line.split(separator: " ").map(String.init)
            let args: [String]
            if words.first == "run", words.count > 2, Int(words[1]) != nil {
                args = Array(words.dropFirst(2))
            } else if words.first == "run_to", words.count > 3, Int(words[2]) != nil {
                args = Array(words.dropFirst(3))
            } else {
                continue
            }
            paths.insert(resolve(args).path.joined(separator: " "))
        }
        return paths
    }

    @Test func everyDocumentedCommandIsRunByTheWalkthroughOrANamedTest() throws {
        let walkthrough = try Self.walkthroughPaths()
        #expect(walkthrough.isSuperset(of: ["sandbox up", "validate", "plan", "apply", "status", "drift", "routes verify", "rollout status", "audit verify"]), "\(walkthrough.sorted())")
        var documented: [String: String] = [:]
        for document in try Self.documents() {
            for command in Self.commands(in: document.text, name: document.name) {
                for path in Self.paths(command) { documented[path] = documented[path] ?? command.place }
            }
        }
        let tests = try FileManager.default.subpathsOfDirectory(atPath: CLI.repositoryRoot.appendingPathComponent("Tests").path)
            .filter { $0.hasSuffix(".swift") }
            .map { try String(contentsOf: CLI.repositoryRoot.appendingPathComponent("Tests/\($0)"), encoding: .utf8) }
            .joined(separator: "\n")
        for (path, place) in documented.sorted(by: { $0.key < $1.key }) where !walkthrough.contains(path) {
            guard let test = Self.runBy[path] else {
                Issue.record("\(place): `meridian \(path)` is documented but neither scripts/walkthrough nor a test in DocCommandTests.runBy runs it")
                continue
            }
            let function = test.split(separator: ".").last.map(String.init) ?? test
            #expect(tests.contains("func \(function)("), "DocCommandTests.runBy names \(test) for `meridian \(path)`, but no test has that name")
        }
        for (path, test) in Self.runBy where documented[path] == nil {
            Issue.record("DocCommandTests.runBy lists `meridian \(path)` (\(test)), which no document shows: drop it")
        }
    }
}
