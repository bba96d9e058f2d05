import MeridianBasics
import MeridianSSH
import Testing

@Suite struct RemoteCommandTests {
    @Test func plainWordsStayBare() {
        #expect(RemoteCommand(["ls", "-la", "/srv/meridian/releases", "a_b@c%d+e:f,g.h"]).line
            == "ls -la /srv/meridian/releases a_b@c%d+e:f,g.h")
    }

    @Test func everythingElseIsSingleQuoted() {
        #expect(RemoteCommand.quote("") == "''")
        #expect(RemoteCommand.quote("a b") == "'a b'")
        #expect(RemoteCommand.quote("it's") == "'it'\\''s'")
        #expect(RemoteCommand.quote("'") == "''\\'''")
        #expect(RemoteCommand.quote("$(rm -rf /)") == "'$(rm -rf /)'")
        #expect(RemoteCommand.quote("`id`") == "'`id`'")
        #expect(RemoteCommand.quote("a\nb") == "'a\nb'")
        #expect(RemoteCommand.quote("\"x\"") == "'\"x\"'")
        #expect(RemoteCommand.quote("~root") == "'~root'")
        #expect(RemoteCommand.quote("*") == "'*'")
        #expect(RemoteCommand.quote("A=b") == "'A=b'")
        #expect(RemoteCommand.quote("a;b|c&d>e<f") == "'a;b|c&d>e<f'")
        #expect(RemoteCommand.quote("\\") == "'\\'")
        #expect(RemoteCommand.quote("é ü") == "'é ü'")
        #expect(RemoteCommand.quote("--force") == "--force")
    }

    @Test func compositionKeepsEachPartQuoted() {
        let command = RemoteCommand(["mkdir", "-p", "/srv/a b"]).then(RemoteCommand(["touch", "/srv/a b/it's"]))
        #expect(command.line == "mkdir -p '/srv/a b' && touch '/srv/a b/it'\\''s'")
        #expect(RemoteCommand(["cat", "x"]).piped(into: RemoteCommand(["wc", "-c"])).line == "cat x | wc -c")
        #expect(RemoteCommand(["echo", "a b"]).underPOSIXShell.line == "sh -c 'echo '\\''a b'\\'''")
    }

    @Test func nulCannotBeTransmitted() {
        #expect(!RemoteCommand(["printf", "a\u{0}b"]).isTransmittable)
        #expect(RemoteCommand(["printf", "ab"]).isTransmittable)
    }
}
