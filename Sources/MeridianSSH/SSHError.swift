import Foundation
import MeridianBasics

/// A failure of the SSH transport at one host. Invariant: every error names
/// its place (region, host, address) and one closed `Kind`; its description is
/// a sentence that says what happened and, where there is one, what to do.
public struct SSHError: Error, Sendable, Equatable, CustomStringConvertible {
    public var place: SSHPlace
    public var kind: Kind

    public init(_ kind: Kind, at place: SSHPlace) {
        self.kind = kind
        self.place = place
    }

    public enum Kind: Sendable, Equatable {
        /// The name did not resolve, or every address refused or was unreachable.
        case unreachable(reason: String)
        /// TCP connect, handshake and authentication did not finish in time
        /// (a paused or overloaded host accepts TCP but never answers).
        case connectTimeout(seconds: Double, stage: String)
        /// The key exchange itself failed (no common algorithm, bad banner, …).
        case handshakeFailed(reason: String)
        /// No pinned key or known_hosts entry exists for this host.
        case hostKeyUnknown(key: PublicHostKey, trustCommand: String)
        /// A pinned key or known_hosts entry exists and differs: possibly a
        /// man-in-the-middle.
        case hostKeyChanged(key: PublicHostKey, expected: [String])
        /// The server refused every key that was tried.
        case authRefused(user: String, tried: [String])
        /// The remote command ran and exited non-zero (or died of a signal).
        case commandFailed(command: String, exitCode: Int32, signal: String?, stderrTail: String)
        /// The remote command did not finish within its timeout.
        case commandTimeout(command: String, seconds: Double)
        /// The command line cannot be sent (it holds a NUL byte).
        case commandRejected(command: String, reason: String)
        /// An SFTP upload or download failed.
        case transferFailed(path: String, reason: String)
        /// The connection broke while something was running on it.
        case connectionDropped(during: String, reason: String)
        /// A direct-tcpip request to an address and port the host reaches failed.
        case tunnelFailed(address: String, port: Int, reason: String)
        /// The session was used after it was closed or after it broke.
        case sessionClosed
        /// Any other libssh2 failure, with its code name and message.
        case library(operation: String, code: Int32, codeName: String, message: String)
    }

    public var description: String {
        let at = place.description
        switch kind {
        case .unreachable(let reason):
            return "\(at): unreachable: \(reason). Check that the host is up and that sshd listens on port \(place.port)."
        case .connectTimeout(let seconds, let stage):
            return "\(at): connect timeout: no answer after \(Self.format(seconds)) s (\(stage)). The host may be down, paused or overloaded."
        case .handshakeFailed(let reason):
            return "\(at): SSH handshake failed: \(reason)."
        case .hostKeyUnknown(let key, let trustCommand):
            return "\(at): host key unknown: the host offers \(key.algorithm) key \(key.fingerprint), which is neither pinned nor in known_hosts. Connection refused. If that fingerprint is right, trust it with: \(trustCommand)"
        case .hostKeyChanged(let key, let expected):
            return "\(at): HOST KEY CHANGED: the host offers \(key.algorithm) key \(key.fingerprint), but \(expected.joined(separator: ", ")) was expected. Someone may be intercepting the connection (man-in-the-middle), or the host was reinstalled. Connection refused; verify the new key out of band before replacing the old one."
        case .authRefused(let user, let tried):
            let what = tried.isEmpty ? "no key was available to try" : "tried \(tried.joined(separator: ", "))"
            return "\(at): authentication refused for user \(user): \(what). Check the identity files, the agent and the host's authorized_keys."
        case .commandFailed(let command, let exitCode, let signal, let stderrTail):
            let how = signal.map { "was killed by signal \($0)" } ?? "exited with status \(exitCode)"
            let tail = stderrTail.isEmpty ? " (no stderr)" : "; stderr ends with:\n\(stderrTail)"
            return "\(at): command failed: `\(command)` \(how)\(tail)"
        case .commandTimeout(let command, let seconds):
            return "\(at): command timeout: `\(command)` did not finish within \(Self.format(seconds)) s."
        case .commandRejected(let command, let reason):
            return "\(at): command rejected before sending: `\(command)`: \(reason)."
        case .transferFailed(let path, let reason):
            return "\(at): transfer of \(path) failed: \(reason)."
        case .connectionDropped(let during, let reason):
            return "\(at): connection dropped during \(during): \(reason)."
        case .tunnelFailed(let address, let port, let reason):
            return "\(at): request to \(HostPort(address, port)) through the SSH connection failed: \(reason)."
        case .sessionClosed:
            return "\(at): the SSH session is closed; open a new one."
        case .library(let operation, let code, let codeName, let message):
            return "\(at): \(operation) failed: \(codeName) (\(code))\(message.isEmpty ? "" : ": \(message)")."
        }
    }

    private static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(format: "%.1f", seconds)
    }
}
