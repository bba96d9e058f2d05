import Foundation
import Testing
import MeridianBasics
import MeridianModel
@testable import MeridianPlanning

@Suite struct GatewayScriptsTests {
    @Test func thePrefixIsTheRootsRouterFolder() {
        #expect(GatewayScripts(root: "/srv/meridian").prefix == "/srv/meridian/router/")
        #expect(GatewayScripts(root: "/srv/meridian/").prefix == "/srv/meridian/router/")
        #expect(GatewayScripts(root: "/").prefix == "/router/")
    }

    @Test func errorLogSinceIsExact() {
        #expect(GatewayScripts(root: "/srv/m").errorLogSince(1234) == """
        tail -c +1235 /srv/m/router/logs/error.log 2>/dev/null | grep -E '\\[(emerg|alert|crit|error)\\]' | tail -n 10

        """)
    }

    @Test func activationChecksBeforeItSwapsAndNeverLeavesThePrefix() throws {
        let script = GatewayScripts(root: "/srv/meridian").activate(GatewayFixture.config())
        let lines = script.split(separator: "\n").map(String.init)
        func index(_ line: String) -> Int {
            let found = lines.firstIndex(of: line)
            #expect(found != nil, "missing line: \(line)")
            return found ?? -1
        }
        let check = index("if ! out=$(nginx -t -q -p \"$p\" -c \"$new\" -e \"$err\" \"$@\" 2>&1 </dev/null); then")
        let swap = index("mv -f -- \"$new\" \"$conf\" || { report failed \"cannot rename $new to $conf\"; exit 0; }")
        let reload = index("  if kill -s HUP \"$pid\" 2>/dev/null; then")
        let start = index("if ! out=$(nginx -p \"$p\" -c \"$conf\" -e \"$err\" \"$@\" 2>&1 </dev/null); then")
        #expect(index("p=/srv/meridian/router/") < check)
        #expect(check < swap && swap < reload && reload < start)
        // A failed check removes the new file (and residency scripts no configuration names) and stops before the swap.
        #expect(lines[check + 1] == "  rm -f -- \"$new\"" && lines[check + 2] == "  prune" && lines[check + 3] == "  report check-failed \"$out\"" && lines[check + 4] == "  exit 0")
        #expect(lines[swap + 1] == "prune")
        #expect(!lines.contains { $0.contains(NginxJavaScriptModule.path) }, "a gateway without residency needs no module")
        // With a residency section: no module, nothing written; the script is in place, checked, before nginx -t.
        var config = GatewayFixture.config()
        config.residency = GatewayResidency(region: "eu-west", header: "X-Data-Residency", refuseStatus: 451, assumeWhenMissing: nil,
                                            routes: [.init(data: Jurisdiction("EU")!, servesLocally: true, hops: [])], peers: [])
        let residency = try #require(config.residencyScript)
        let withScript = GatewayScripts(root: "/srv/meridian").activate(config).split(separator: "\n").map(String.init)
        func at(_ line: String) -> Int { withScript.firstIndex(of: line) ?? Int.max }
        let probe = at(NginxJavaScriptModule.probe + " || { report failed " + ShellQuoting.quote(NginxJavaScriptModule.missingReason) + "; exit 0; }")
        let written = at("mv -f -- \"$jsnew\" \"$js\" || { rm -f -- \"$jsnew\"; report failed \"cannot rename $jsnew to $js\"; exit 0; }")
        #expect(probe < at("mkdir -p -- \"$p\"logs \"$p\"run \"$p\"temp 2>/dev/null || { report failed \"cannot create the folders under $p\"; exit 0; }"))
        #expect(written < at("if ! out=$(nginx -t -q -p \"$p\" -c \"$new\" -e \"$err\" \"$@\" 2>&1 </dev/null); then"))
        #expect(withScript.contains("js=\"$p\"" + residency.fileName))
        #expect(withScript.contains("if [ \"$(sha256sum < \"$jsnew\" | cut -c1-64)\" != \(SHA256.hex(residency.text)) ]; then"))
        #expect(config.text.hasPrefix("# ") && config.text.contains("\nload_module \(NginxJavaScriptModule.path);\n") && config.text.contains("js_import meridian_residency from \(residency.fileName);"))
        #expect(lines.contains("if [ \"$(id -u)\" = 0 ]; then set -- -g \"user $(id -un);\"; fi"))
        #expect(!script.contains("/var/"))
    }

    @Test func hostileRootsStayOneWordAndTheTextComesOnStandardInput() throws {
        let root = "/tmp/it's $(touch /tmp/meridian-pwned) `x`\nnext"
        let config = GatewayFixture.config()
        let script = GatewayScripts(root: root).activate(config)
        #expect(script.contains("p=" + ShellQuoting.quote(root + "/router/") + "\n"))
        // The text is not in the script, only its hash, checked before anything else reads the file.
        #expect(!script.contains("worker_processes"))
        let lines = script.split(separator: "\n").map(String.init)
        let read = try #require(lines.firstIndex(of: "cat > \"$new\" 2>/dev/null || { rm -f -- \"$new\"; report failed \"cannot write $new\"; exit 0; }"))
        #expect(lines[read + 1] == "if [ \"$(sha256sum < \"$new\" | cut -c1-64)\" != \(SHA256.hex(config.text)) ]; then")
        #expect(lines[(read + 2)...].first { $0.contains("nginx -t") } != nil)
        #expect(!lines[..<read].contains { $0.contains("nginx -t") })
    }

    @Test func theLivenessCheckTreatsAZombieAsDead() throws {
        // A child that exits while its parent sleeps stays a zombie until the parent reaps it.
        let script = ProcessLiveness.shellFunction + """

        sh -c 'exit 0' & z=$!
        sleep 0.3
        if alive "$z"; then echo zombie-alive; else echo zombie-dead; fi
        if alive "$$"; then echo self-alive; else echo self-dead; fi
        if alive 999999999; then echo none-alive; else echo none-dead; fi
        wait
        """
        let output = String(decoding: try runShell(script), as: UTF8.self)
        #expect(output == "zombie-dead\nself-alive\nnone-dead\n")
    }

    @Test func outcomesParse() {
        func parse(_ text: String) -> GatewayActivationOutcome? {
            try? GatewayScripts.parseActivation(Data(text.utf8), host: "eu/gw").get()
        }
        func hex(_ text: String) -> String { "x" + Data(text.utf8).map { String(format: "%02x", $0) }.joined() }
        #expect(parse("gateway started 4242\n") == .started(pid: 4242))
        #expect(parse("noise\ngateway reloaded 17 2048\n") == .reloaded(pid: 17, errorLogOffset: 2048))
        #expect(parse("gateway check-failed \(hex("nginx: [emerg] unknown directive \"bogus\"\n"))\n") == .checkFailed("nginx: [emerg] unknown directive \"bogus\""))
        #expect(parse("gateway start-failed \(hex("bind() failed"))\n") == .startFailed("bind() failed"))
        #expect(parse("gateway failed \(hex("nginx is not installed"))\n") == .failed("nginx is not installed"))
        #expect(parse("gateway reloaded x\n") == nil)
        #expect(parse("") == nil)
        if case .failure(let error) = GatewayScripts.parseActivation(Data("gateway weird\n".utf8), host: "eu/gw") {
            #expect(error.description == "host eu/gw: observation output: unexpected gateway outcome `gateway weird`")
        } else {
            Issue.record("an unknown outcome must not parse")
        }
    }
}
