import Foundation
import MeridianBasics
import MeridianPlanning
import MeridianSSH

/// Observes a host in one round trip: the observe script goes to `sh` on
/// its standard input (so its size is not limited by the command line), and
/// its output is parsed into the host's observed state and, when a lock was
/// requested, whether this run now holds the host's lock.
public enum HostObserver {
    public static let shell = RemoteCommand(["sh", "-s"])

    /// Runs `script` on an open session; a parse failure or a failed script is
    /// an error naming the host.
    public static func observe(_ script: ObserveScript, on session: SSHSession) async throws -> Observation {
        let result = try await session.run(shell, stdin: Data(script.script.utf8))
        let hostName = session.endpoint.hostID.description
        return try script.parse(result.stdout, host: hostName).get()
    }
}
