import MeridianBasics

/// What `meridian hosts check` reports for one host. Invariant: `failure` is
/// nil exactly when the host was reached, its key accepted and auth passed;
/// the host key is filled in whenever the handshake got that far.
public struct HostCheckReport: Sendable {
    public enum HostKeyStatus: Sendable, Equatable {
        case trusted
        case unknown
        case changed
        case revoked
        /// The handshake did not get far enough to see a key.
        case notSeen
    }

    public var endpoint: SSHEndpoint
    public var hostKey: PublicHostKey?
    public var hostKeyStatus: HostKeyStatus
    public var authenticated: Bool
    /// Whether the host answered and completed the SSH handshake (true also
    /// when its key or the login was then refused).
    public var reached: Bool = false
    /// Connect + handshake + host-key check + auth.
    public var connectTime: Duration?
    /// One `true` command on the open session.
    public var roundTrip: Duration?
    public var capabilities: HostCapabilities?
    public var failure: SSHError?
}

/// The programs meridian needs on a host. Invariant: each flag says whether
/// `command -v NAME` found the program in the remote user's PATH.
public struct HostCapabilities: Sendable, Equatable {
    public var sh: Bool
    public var tar: Bool
    public var sha256sum: Bool
    public var nginx: Bool
    /// Whether nginx's JavaScript module is installed (`NginxJavaScriptModule.path`).
    public var nginxJavaScript: Bool

    public init(sh: Bool, tar: Bool, sha256sum: Bool, nginx: Bool, nginxJavaScript: Bool = false) {
        self.sh = sh
        self.tar = tar
        self.sha256sum = sha256sum
        self.nginx = nginx
        self.nginxJavaScript = nginxJavaScript
    }

    /// Whether the host has what meridian needs: sh, tar and sha256sum, and
    /// nginx when it is a gateway, with its JavaScript module when the
    /// gateway has a residency section (`residency`).
    public func isSufficient(gateway: Bool, residency: Bool = false) -> Bool {
        sh && tar && sha256sum && (!gateway || (nginx && (!residency || nginxJavaScript)))
    }

    /// One round trip: a fixed script that reports each program and the module.
    public static let probe = RemoteCommand(fixedScript:
        "for p in sh tar sha256sum nginx; do if command -v \"$p\" >/dev/null 2>&1; then echo \"$p yes\"; else echo \"$p no\"; fi; done; "
        + "if \(NginxJavaScriptModule.probe); then echo 'nginx-js yes'; else echo 'nginx-js no'; fi")

    /// Reads the probe's output (`NAME yes|no` per line).
    public static func parse(_ output: String) -> HostCapabilities {
        var found: Set<String> = []
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[1] == "yes" { found.insert(String(fields[0])) }
        }
        return HostCapabilities(sh: found.contains("sh"), tar: found.contains("tar"), sha256sum: found.contains("sha256sum"), nginx: found.contains("nginx"),
                                nginxJavaScript: found.contains("nginx-js"))
    }
}

/// Checks hosts without changing them. Invariant: it only reads — connects,
/// runs `true` and the capability probe — and never records a host key.
public enum HostCheck {
    public static func run(_ endpoint: SSHEndpoint) async -> HostCheckReport {
        var report = HostCheckReport(endpoint: endpoint, hostKey: nil, hostKeyStatus: .notSeen, authenticated: false)
        let start = ContinuousClock.now
        let session: SSHSession
        do {
            session = try await SSHSession.open(endpoint)
        } catch let error as SSHError {
            report.failure = error
            switch error.kind {
            case .hostKeyUnknown(let key, _):
                report.hostKey = key
                report.hostKeyStatus = .unknown
                report.reached = true
            case .hostKeyChanged(let key, _):
                report.hostKey = key
                report.hostKeyStatus = .changed
                report.reached = true
            case .hostKeyRevoked(let key, _):
                report.hostKey = key
                report.hostKeyStatus = .revoked
                report.reached = true
            case .authRefused:
                report.hostKeyStatus = .trusted
                report.reached = true
            case .unreachable, .connectTimeout, .handshakeFailed, .commandFailed, .commandTimeout, .commandRejected,
                 .transferFailed, .connectionDropped, .tunnelFailed, .sessionClosed, .library:
                break
            }
            return report
        } catch {
            report.failure = SSHError(.handshakeFailed(reason: "\(error)"), at: endpoint.place)
            return report
        }
        report.connectTime = ContinuousClock.now - start
        report.hostKey = session.hostKey
        report.hostKeyStatus = .trusted
        report.authenticated = true
        report.reached = true
        do {
            let before = ContinuousClock.now
            _ = try await session.run(RemoteCommand(["true"]))
            report.roundTrip = ContinuousClock.now - before
            let probe = try await session.run(HostCapabilities.probe)
            report.capabilities = HostCapabilities.parse(probe.stdoutText)
        } catch let error as SSHError {
            report.failure = error
        } catch {
            report.failure = SSHError(.connectionDropped(during: "the host check", reason: "\(error)"), at: endpoint.place)
        }
        await session.close()
        return report
    }

    /// Checks every host, `parallelism` at a time; reports in the order given.
    public static func runAll(_ endpoints: [SSHEndpoint], parallelism: Int = SSHFanOut.defaultParallelism) async -> [HostCheckReport] {
        await withTaskGroup(of: (Int, HostCheckReport).self) { group in
            var reports = [HostCheckReport?](repeating: nil, count: endpoints.count)
            var next = 0
            while next < min(max(1, parallelism), endpoints.count) {
                let index = next
                group.addTask { (index, await run(endpoints[index])) }
                next += 1
            }
            while let (index, report) = await group.next() {
                reports[index] = report
                if next < endpoints.count {
                    let index = next
                    group.addTask { (index, await run(endpoints[index])) }
                    next += 1
                }
            }
            return reports.compactMap { $0 }
        }
    }
}
