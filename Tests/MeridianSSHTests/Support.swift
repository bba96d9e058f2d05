import Foundation
import MeridianSSH
import MeridianTestHosts

// Address ranges of this test target: 127.0.10.0 – 127.0.49.255. Each test
// that starts hosts takes its own third octet, so tests running in parallel
// never share an sshd.

/// An endpoint for a test host that trusts the cluster's known_hosts file.
func endpoint(
    _ cluster: TestHostCluster,
    _ host: TestHost,
    policy: HostKeyPolicy? = nil,
    connectTimeout: Duration = .seconds(10),
    commandTimeout: Duration = .seconds(60)
) -> SSHEndpoint {
    SSHEndpoint(
        region: "test-region",
        hostName: host.name,
        address: host.address,
        port: host.port,
        user: cluster.user,
        identityFiles: [cluster.identityFile],
        hostKeyPolicy: policy ?? HostKeyPolicy(knownHostsFile: cluster.knownHostsFile),
        connectTimeout: connectTimeout,
        commandTimeout: commandTimeout
    )
}

/// Runs a local program and returns its stdout; for ssh-keygen and ssh-agent.
@discardableResult
func runLocal(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

/// Waits, bounded (about 20 s), until `condition` holds.
func eventually(_ condition: () -> Bool) async -> Bool {
    await Poll.until(condition)
}

extension SSHError {
    var kindName: String {
        switch kind {
        case .unreachable: return "unreachable"
        case .connectTimeout: return "connectTimeout"
        case .handshakeFailed: return "handshakeFailed"
        case .hostKeyUnknown: return "hostKeyUnknown"
        case .hostKeyChanged: return "hostKeyChanged"
        case .authRefused: return "authRefused"
        case .commandFailed: return "commandFailed"
        case .commandTimeout: return "commandTimeout"
        case .commandRejected: return "commandRejected"
        case .transferFailed: return "transferFailed"
        case .connectionDropped: return "connectionDropped"
        case .tunnelFailed: return "tunnelFailed"
        case .sessionClosed: return "sessionClosed"
        case .library: return "library"
        }
    }
}

/// The SSHError a throwing call threw, or nil.
func sshError(_ body: () async throws -> Void) async -> SSHError? {
    do {
        try await body()
        return nil
    } catch let error as SSHError {
        return error
    } catch {
        return nil
    }
}
