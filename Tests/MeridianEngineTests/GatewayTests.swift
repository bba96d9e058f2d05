import Foundation
import Testing
import MeridianBasics
@testable import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianSSH
import MeridianTestHosts

// Address ranges of the gateway tests: 127.0.160.0 – 127.0.169.255, one third octet per test.

/// A region on real test hosts: host1 is the gateway (sshd, and the nginx the
/// gateway steps start), host2 and host3 run both slots of `inference` as
/// small HTTP backends on their own addresses.
final class GatewayTestRegion: @unchecked Sendable {
    static let gatewayPort = 18080
    static let ports = SlotPorts(blue: 18101, green: 18102)

    let cluster: TestHostCluster
    let backends: [TestBackend]
    let fleet: Fleet
    let session: SSHSession

    var gateway: TestHost { cluster.hosts[0] }
    var region: Region { fleet.regions[0] }
    var accessLog: String { gateway.root + "/" + GatewayConfig.accessLogPath }

    init(addressPrefix: String) async throws {
        cluster = try TestHostCluster(count: 3, addressPrefix: addressPrefix)
        var backends: [TestBackend] = []
        for host in cluster.hosts.dropFirst() {
            for slot in Slot.allCases {
                backends.append(try TestBackend(address: host.address, port: Self.ports[slot], slot: slot.rawValue, host: host.name))
            }
        }
        self.backends = backends
        let inference = Component(name: "inference", artifact: .path("artifacts/inference/{version}"), start: ["bin/serve"], ports: Self.ports, route: "/v1/")
        let settings = FleetSettings(name: "gateway-test", defaults: FleetDefaults(), components: [inference], platform: [:], waves: [], residency: ResidencySettings())
        let hosts = cluster.hosts.enumerated().map { index, host in
            FleetHost(name: host.name, address: host.address, roles: index == 0 ? [.gateway] : [.component("inference")], root: host.root)
        }
        let region = Region(name: "gw-test", file: "regions/gw-test.yaml", jurisdiction: Jurisdiction("EU")!, gatewayPort: Self.gatewayPort, hosts: hosts)
        fleet = Fleet(settings: settings, regions: [region], policies: [], fileHashes: [:], sources: SourceMap())
        let host = cluster.hosts[0]
        session = try await SSHSession.open(SSHEndpoint(
            region: region.name, hostName: host.name, address: host.address, port: host.port, user: cluster.user,
            identityFiles: [cluster.identityFile], hostKeyPolicy: HostKeyPolicy(pinnedKeys: [host.hostKeyLine])))
    }

    func config(_ split: TrafficSplit = .all(on: .blue), port: Int = GatewayTestRegion.gatewayPort) -> GatewayConfig {
        var region = self.region
        region.gatewayPort = port
        return GatewayConfig.forGateway(region.hosts[0], in: region, fleet: fleet, splits: ["inference": split])
    }

    func activate(_ config: GatewayConfig, attempts: Int = 200) async throws -> GatewayActivationReport {
        try await GatewayActivation.activate(config, root: gateway.root, on: session, host: "gw-test/\(gateway.name)", attempts: attempts)
    }

    /// Runs the activation script for a configuration given as text (sent as
    /// `sent`, the text itself unless a test cuts it) and parses its outcome.
    func activate(text: String, sent: String? = nil) async throws -> GatewayActivationOutcome {
        let result = try await session.run(RemoteCommand(["sh", "-c", GatewayScripts(root: gateway.root).activate(text: text)]), stdin: Data((sent ?? text).utf8))
        return try GatewayScripts.parseActivation(result.stdout, host: gateway.name).get()
    }

    /// `count` GETs of /v1/… through the gateway on one keep-alive connection: slot and host of each answer.
    func send(_ count: Int) throws -> [(slot: String, host: String)] {
        let client = KeepAliveHTTPClient(address: gateway.address, port: Self.gatewayPort)
        return try (0..<count).map { index in
            let response = try client.get("/v1/request-\(index)")
            guard response.status == 200 else { throw KeepAliveHTTPClient.Failure(description: "request \(index) answered \(response.status)") }
            return (response.headers["x-meridian-slot"] ?? "?", response.headers["x-meridian-host"] ?? "?")
        }
    }

    func accessLogLines() -> [[String]] {
        let text = (try? String(contentsOfFile: accessLog, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    func close() async {
        await session.close()
        for backend in backends { backend.stop() }
        cluster.stopAll()
    }
}

/// Shared counters of load threads.
final class LoadTally: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var ok = 0
    private(set) var failures: [String] = []
    private(set) var staleRetries = 0
    private(set) var connections = 0
    private(set) var finished = 0
    private var stopping = false

    private var answered = 0

    /// Counts one answered request, as it happens.
    func count() {
        lock.lock()
        answered += 1
        lock.unlock()
    }

    var answeredSoFar: Int {
        lock.lock()
        defer { lock.unlock() }
        return answered
    }

    /// Asks the load threads to finish after their current request.
    func stop() {
        lock.lock()
        stopping = true
        lock.unlock()
    }

    var stopRequested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    func record(ok: Int, failures: [String], staleRetries: Int, connections: Int) {
        lock.lock()
        self.ok += ok
        self.failures += failures
        self.staleRetries += staleRetries
        self.connections += connections
        finished += 1
        lock.unlock()
    }

    var done: Int {
        lock.lock()
        defer { lock.unlock() }
        return finished
    }
}

/// The gateway against real sshd and nginx on loopback: rendering, check,
/// start, reload, confirmation, weights, log lines and keep-alive reloads.
@Suite struct GatewayTests {
    /// At most this many standard deviations from the binomial mean (a
    /// chance of about 7 in a million for a truly random balancer; nginx's
    /// weighted round robin is deterministic and lands much closer).
    static let sigmas = 4.5

    static func withinBinomial(_ observed: Int, trials: Int, share: Double) -> Bool {
        let mean = Double(trials) * share
        let deviation = (Double(trials) * share * (1 - share)).squareRoot()
        return abs(Double(observed) - mean) <= sigmas * deviation
    }

    @Test func weightsShiftTrafficAndEveryLogLineSaysWhichSlotServed() async throws {
        let setup = try await GatewayTestRegion(addressPrefix: "127.0.160")
        defer { setup.cluster.stopAll() }

        let first = try await setup.activate(setup.config())
        guard case .started = first.outcome else { Issue.record("expected nginx to be started, got \(first.outcome)"); return }
        // nginx runs from the prefix, with the pid file, logs and temp folders inside it.
        let pid = try String(contentsOfFile: setup.gateway.root + "/" + GatewayConfig.pidPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let command = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8).replacingOccurrences(of: "\0", with: " ")
        #expect(command.contains("-p \(setup.gateway.root)/router/ -c \(setup.gateway.root)/router/nginx.conf -e \(setup.gateway.root)/router/logs/error.log"), "\(command)")
        for folder in ["logs", "run", "temp/proxy", "temp/client_body"] {
            #expect(FileManager.default.fileExists(atPath: setup.gateway.root + "/router/" + folder), "\(folder)")
        }

        let allBlue = try setup.send(200)
        #expect(allBlue.allSatisfy { $0.slot == "blue" })
        #expect(Self.withinBinomial(allBlue.filter { $0.host == "host2" }.count, trials: 200, share: 0.5))

        let canary = setup.config(TrafficSplit(blue: 90, green: 10)!)
        let second = try await setup.activate(canary)
        guard case .reloaded = second.outcome else { Issue.record("expected a reload, got \(second.outcome)"); return }
        let linesBefore = setup.accessLogLines().count
        let trials = 1000
        let split = try setup.send(trials)
        let green = split.filter { $0.slot == "green" }.count
        print("gateway weights: 90/10 over 2 hosts, \(trials) requests: green \(green), host2 \(split.filter { $0.host == "host2" }.count); confirmed after \(second.confirmAttempts) look(s)")
        #expect(Self.withinBinomial(green, trials: trials, share: 0.10), "green took \(green) of \(trials)")
        #expect(Self.withinBinomial(split.filter { $0.host == "host3" }.count, trials: trials, share: 0.5))

        // meridian-v1: time, component, upstream, slot, status, request time, upstream time.
        // nginx logs a request after answering it, so the last line may still be on its way.
        #expect(Poll.blockingUntil(attempts: 500) { setup.accessLogLines().count - linesBefore >= trials }, "the access log never held a line for each of the \(trials) requests")
        let lines = Array(setup.accessLogLines().dropFirst(linesBefore))
        #expect(lines.count == trials)
        let slotOf = Dictionary(uniqueKeysWithValues: canary.routes[0].servers.map { ($0.endpoint, $0.slot.rawValue) })
        for fields in lines {
            #expect(fields.count == 7, "\(fields)")
            guard fields.count == 7 else { break }
            #expect(Double(fields[0]).map { $0 > 1_700_000_000 } == true, "\(fields)")
            #expect(fields[1] == "inference")
            #expect(slotOf[fields[2]] == fields[3], "\(fields)")
            #expect(fields[4] == "200")
            #expect(Double(fields[5]) != nil && Double(fields[6]) != nil, "\(fields)")
        }
        #expect(lines.filter { $0.count > 3 && $0[3] == "green" }.count == green)
        // The same lines through meridian's own parser: every one parses, with the slot nginx logged.
        let text = (try? String(contentsOfFile: setup.accessLog, encoding: .utf8)) ?? ""
        let parsed = AccessLog(text: text)
        #expect(parsed.unparsable.isEmpty, "\(parsed.unparsable.prefix(3))")
        let recent = Array(parsed.lines.dropFirst(linesBefore))
        #expect(recent.count == trials && recent.filter { $0.slot == .green }.count == green)
        #expect(recent.allSatisfy { $0.component == "inference" && $0.status == 200 && slotOf[$0.answered?.address ?? ""] == $0.slot?.rawValue })

        // A path no route takes is answered by the gateway itself and logged without a component.
        let client = KeepAliveHTTPClient(address: setup.gateway.address, port: GatewayTestRegion.gatewayPort)
        #expect(try client.get("/other").status == 404)
        let last = setup.accessLogLines().last ?? []
        #expect(Array(last.dropFirst().prefix(4)) == ["-", "-", "-", "404"], "\(last)")
        await setup.close()
    }

    @Test func aRefusedConfigurationOrAFailedReloadLeavesTheLiveOneServing() async throws {
        let setup = try await GatewayTestRegion(addressPrefix: "127.0.161")
        defer { setup.cluster.stopAll() }
        let good = setup.config()
        _ = try await setup.activate(good)
        let live = setup.gateway.root + "/" + GatewayConfig.path

        // nginx -t refuses: nothing is swapped, nothing is signalled, the temporary file is gone.
        let outcome = try await setup.activate(text: good.text + "bogus_directive on;\n")
        guard case .checkFailed(let message) = outcome else { Issue.record("expected the check to fail, got \(outcome)"); return }
        #expect(message.contains("unknown directive \"bogus_directive\""), "\(message)")
        #expect(try String(contentsOfFile: live, encoding: .utf8) == good.text)
        #expect(!FileManager.default.fileExists(atPath: setup.gateway.root + "/router/.nginx.conf.new"))
        #expect(try await GatewayActivation.servingIdentity(good, on: setup.session) == good.identity)

        // A text cut short on its way (a dropped connection) is refused before nginx sees it.
        let moved = setup.config(port: 18090)
        let cut = try await setup.activate(text: moved.text, sent: String(moved.text.prefix(200)))
        guard case .failed(let reason) = cut else { Issue.record("expected a refused transfer, got \(cut)"); return }
        #expect(reason.contains("arrived incomplete"), "\(reason)")
        #expect(try String(contentsOfFile: live, encoding: .utf8) == good.text)

        // A configuration nginx -t accepts but the running nginx cannot load
        // (its new port is taken): the reload fails silently, and only the
        // identity check notices; the error log says why.
        let blocker = try TestBackend(address: setup.gateway.address, port: 18090, slot: "none", host: "blocker")
        defer { blocker.stop() }
        do {
            _ = try await setup.activate(moved, attempts: 10)
            Issue.record("a reload nginx could not carry out must not be confirmed")
        } catch let error as GatewayActivationError {
            guard case .notConfirmed(_, let expected, _, let attempts, let errorLog) = error else { Issue.record("expected .notConfirmed, got \(error)"); return }
            #expect(expected == moved.identity && attempts == 10)
            #expect(errorLog.contains("Address already in use"), "\(errorLog)")
            #expect(error.description.contains("after 10 looks the gateway still serves"), "\(error)")
        }
        #expect(try await GatewayActivation.servingIdentity(good, on: setup.session) == good.identity)
        await setup.close()
    }

    @Test func aReloadUnderKeepAliveLoadLosesNoRequest() async throws {
        let setup = try await GatewayTestRegion(addressPrefix: "127.0.162")
        defer { setup.cluster.stopAll() }
        _ = try await setup.activate(setup.config())
        // Each worker sends until the reloads are done (at most `perWorker` requests each).
        let workers = 4
        let perWorker = 200_000
        let tally = LoadTally()
        let address = setup.gateway.address
        for worker in 0..<workers {
            let thread = Thread {
                let client = KeepAliveHTTPClient(address: address, port: GatewayTestRegion.gatewayPort)
                var ok = 0
                var failures: [String] = []
                for index in 0..<perWorker where !tally.stopRequested {
                    do {
                        let response = try client.get("/v1/w\(worker)-\(index)")
                        tally.count()
                        if response.status == 200 { ok += 1 } else { failures.append("\(worker)/\(index): status \(response.status)") }
                    } catch {
                        failures.append("\(worker)/\(index): \(error)")
                    }
                }
                tally.record(ok: ok, failures: failures, staleRetries: client.staleRetries, connections: client.connections)
            }
            thread.start()
        }
        var reloads = 0
        var activations: [Duration] = []
        var confirmLooks: [Int] = []
        let splits = [TrafficSplit(blue: 50, green: 50)!, .all(on: .green), TrafficSplit(blue: 90, green: 10)!, .all(on: .blue)]
        for round in 0..<200 where tally.done < workers && reloads < 8 {
            let started = ContinuousClock.now
            let report = try await setup.activate(setup.config(splits[round % splits.count]))
            activations.append(ContinuousClock.now - started)
            confirmLooks.append(report.confirmAttempts)
            guard case .reloaded = report.outcome else { Issue.record("expected a reload, got \(report.outcome)"); break }
            reloads += 1
            // Traffic must straddle every reload: wait (bounded, 10 s) for 40 more answers.
            let mark = tally.answeredSoFar
            for _ in 0..<1000 where tally.answeredSoFar < mark + 40 && tally.done < workers { try await Task.sleep(for: .milliseconds(10)) }
            #expect(tally.answeredSoFar >= mark + 40, "the load stalled after reload \(reloads)")
        }
        tally.stop()
        // The baseline, measured in the same run under the same load: one command's round trip.
        var roundTrips: [Duration] = []
        for _ in 0..<5 {
            let started = ContinuousClock.now
            _ = try await setup.session.run(RemoteCommand(["true"]))
            roundTrips.append(ContinuousClock.now - started)
        }
        func median(_ values: [Duration]) -> Double {
            let sorted = values.sorted()
            let middle = sorted[sorted.count / 2].components
            return Double(middle.seconds) + Double(middle.attoseconds) / 1e18
        }
        let ratio = median(activations) / max(median(roundTrips), 1e-6)
        print(String(format: "gateway activation under load: median %.0f ms = %.1f x one command round trip (%.0f ms); identity looks per reload: %@",
                     median(activations) * 1000, ratio, median(roundTrips) * 1000, confirmLooks.map(String.init).joined(separator: ",")))
        for _ in 0..<3000 where tally.done < workers { try await Task.sleep(for: .milliseconds(10)) }
        #expect(tally.done == workers, "the load threads did not finish within 30 s")
        print("gateway reload under load: \(reloads) reloads, \(tally.ok) of \(tally.ok + tally.failures.count) requests answered 200, \(tally.failures.count) lost, \(tally.staleRetries) retried after an idle connection was closed, \(tally.connections) connections")
        #expect(reloads == 8, "the load ended before eight reloads ran")
        #expect(tally.failures.isEmpty, "\(tally.failures.prefix(5))")
        #expect(tally.ok >= 8 * 40)
        await setup.close()
    }

    @Test func theIdentityAnswersOnlyTheHostItselfAndAStalePidIsNeverSignalled() async throws {
        let setup = try await GatewayTestRegion(addressPrefix: "127.0.163")
        defer { setup.cluster.stopAll() }
        // A pid file left behind that names a live process which is not nginx.
        let bystander = try SpawnedProcess(["/bin/sleep", "30"])
        defer { bystander.stop() }
        try FileManager.default.createDirectory(atPath: setup.gateway.root + "/router/run", withIntermediateDirectories: true)
        try "\(bystander.pid)\n".write(toFile: setup.gateway.root + "/" + GatewayConfig.pidPath, atomically: true, encoding: .utf8)
        let config = setup.config()
        let report = try await setup.activate(config)
        guard case .started(let pid) = report.outcome else { Issue.record("expected a fresh start, got \(report.outcome)"); return }
        #expect(pid != Int(bystander.pid))
        #expect(bystander.isRunning, "the process named by a stale pid file was signalled")

        let local = KeepAliveHTTPClient(address: setup.gateway.address, port: GatewayTestRegion.gatewayPort)
        let answer = try local.get(GatewayConfig.identityLocation)
        #expect(answer.status == 200 && String(decoding: answer.body, as: UTF8.self) == config.identity + "\n")
        let elsewhere = KeepAliveHTTPClient(address: setup.gateway.address, port: GatewayTestRegion.gatewayPort, sourceAddress: "127.0.163.9")
        #expect(try elsewhere.get(GatewayConfig.identityLocation).status == 403)
        #expect(try elsewhere.get("/v1/x").status == 200)
        await setup.close()
    }
}

/// The gateway through the normal apply and drift paths on a real sshd test
/// host (127.0.164.x): apply starts nginx with the rendered configuration,
/// drift names a hand edit `gateway-config-modified`, and remediation puts
/// the applied configuration back through nginx -t and a confirmed reload.
@Suite struct GatewayApplyTests {
    @Test func applyStartsTheGatewayAndDriftRestoresAHandEditedConfiguration() async throws {
        let setup = try await RemediationFleet(addressPrefix: "127.0.164", port: 19591)
        defer { setup.tearDown() }
        try await setup.applyAll()
        let region = setup.fleet.regions[0]
        let desired = GatewayConfig.forGateway(region.gateways[0], in: region, fleet: setup.fleet, splits: [:])
        let live = setup.host.root + "/" + GatewayConfig.path
        #expect(try String(contentsOfFile: live, encoding: .utf8) == desired.text)
        func serving() throws -> String {
            let response = try KeepAliveHTTPClient(address: setup.host.address, port: region.gatewayPort).get(GatewayConfig.identityLocation)
            return String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try serving() == desired.identity)
        #expect(try await setup.findings().isEmpty)

        // Edited by hand and reloaded by hand: the edit serves.
        try desired.text.replacingOccurrences(of: "return 200 \"\(desired.identity)\\n\";", with: "return 200 \"edited by hand\\n\";")
            .write(toFile: live, atomically: false, encoding: .utf8)
        let master = try String(contentsOfFile: setup.host.root + "/" + GatewayConfig.pidPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        kill(pid_t(master) ?? 0, SIGHUP)
        var edited = false
        for _ in 0..<100 where !edited {
            edited = (try? serving()) == "edited by hand"
            if !edited { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(edited, "the hand-edited configuration did not start serving")
        let found = try await setup.findings()
        #expect(found.map(\.kind) == [.gatewayConfigModified] && found.first?.subject == GatewayConfig.path, "\(found)")

        let outcomes = try await setup.remediate([.gatewayConfigModified])
        #expect(outcomes.count == 1 && outcomes.allSatisfy(\.succeeded), "\(outcomes.map(\.result))")
        #expect(try String(contentsOfFile: live, encoding: .utf8) == desired.text)
        #expect(try serving() == desired.identity, "the applied configuration is serving again")
        #expect(try await setup.findings().isEmpty)

        // The residency script beside it is watched too: edited by hand, it is
        // gateway-config-modified, and remediation writes it back and reloads.
        let script = try #require(desired.residencyScript)
        let scriptFile = setup.host.root + "/" + script.path
        #expect(try String(contentsOfFile: scriptFile, encoding: .utf8) == script.text)
        try script.text.replacingOccurrences(of: "return '\(GatewayResidencyScript.conflict)';", with: "return 'value:EU';")
            .write(toFile: scriptFile, atomically: false, encoding: .utf8)
        let scriptFindings = try await setup.findings()
        #expect(scriptFindings.map(\.kind) == [.gatewayConfigModified] && scriptFindings.first?.subject == script.path, "\(scriptFindings)")
        let scriptOutcomes = try await setup.remediate([.gatewayConfigModified])
        #expect(scriptOutcomes.count == 1 && scriptOutcomes.allSatisfy(\.succeeded), "\(scriptOutcomes.map(\.result))")
        #expect(try String(contentsOfFile: scriptFile, encoding: .utf8) == script.text)
        #expect(try await setup.findings().isEmpty)
        let scripts = try FileManager.default.contentsOfDirectory(atPath: setup.host.root + "/" + GatewayConfig.prefix).filter { $0.hasSuffix(GatewayResidencyScript.suffix) }
        #expect(scripts == [script.fileName], "only the live configuration's script is kept: \(scripts)")

        // nginx stopped (a reboot, a kill): the next plan starts it through the gateway step.
        TestHostCluster.stopGateway(root: setup.host.root)
        #expect((try? serving()) == nil)
        let planned = try await setup.planning.plan(regions: [], parallelism: 2)
        let actions = planned.plan.hosts.flatMap(\.actions).filter { $0.subject == GatewayConfig.path }
        #expect(actions.map(\.reasons) == [["nginx is not running: the gateway step starts it with this configuration"]], "\(actions)")
        let report = try await setup.apply.apply(planned.plan, fleet: planned.fleet)
        #expect(report.exitCode == 0, "\(report.regions)")
        #expect(try serving() == desired.identity)
        let again = try await setup.planning.plan(regions: [], parallelism: 2)
        #expect(!again.plan.summary.hasChanges, "a running gateway is left alone")
        setup.cluster.stopAll()
    }
}
