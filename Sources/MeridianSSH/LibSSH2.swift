import CLibSSH2
import Foundation

/// Process-wide libssh2 state. Invariant: `libssh2_init` runs exactly once,
/// before the first session, whatever the number of threads that race to it.
enum LibSSH2 {
    private static let initResult: Int32 = libssh2_init(0)

    static func ensureInitialized() {
        precondition(initResult == 0, "libssh2_init failed with \(initResult)")
    }

    // Constants whose C macros Swift does not import with a usable type.
    static let eagain: Int32 = -37
    static let streamStderr: Int32 = 1
    static let windowDefault: UInt32 = 2 * 1024 * 1024
    static let packetDefault: UInt32 = 32768
    static let blockInbound: Int32 = 0x0001
    static let blockOutbound: Int32 = 0x0002
    static let hashSHA256: Int32 = 3
    static let knownHostTypePlain: Int32 = 1
    static let knownHostKeyEncRaw: Int32 = 1 << 16
    static let knownHostFileOpenSSH: Int32 = 1
    static let knownHostMatch: Int32 = 0
    static let knownHostMismatch: Int32 = 1
    static let knownHostNotFound: Int32 = 2
    static let sftpOpenFile: Int32 = 0
    static let sftpRead: UInt = 0x01
    static let sftpWrite: UInt = 0x02
    static let sftpCreate: UInt = 0x08
    static let sftpExclusive: UInt = 0x20
    static let sftpStat: Int32 = 0
    static let sftpSetStat: Int32 = 2
    static let sftpAttrUIDGID: UInt = 0x02
    static let sftpAttrPermissions: UInt = 0x04
    static let sftpNoSuchFile: UInt = 2
    static let sftpOpUnsupported: UInt = 8

    /// The knownhost key-type bits for a `libssh2_session_hostkey` type.
    static func knownHostKeyBits(hostKeyType: Int32) -> Int32 {
        switch hostKeyType {
        case 1: return 2 << 18 // ssh-rsa
        case 2: return 3 << 18 // ssh-dss
        case 3: return 4 << 18 // ecdsa-sha2-nistp256
        case 4: return 5 << 18 // ecdsa-sha2-nistp384
        case 5: return 6 << 18 // ecdsa-sha2-nistp521
        case 6: return 7 << 18 // ssh-ed25519
        default: return 15 << 18
        }
    }

    /// Codes that mean the TCP connection itself is gone.
    static func isSocketFailure(_ code: Int32) -> Bool {
        switch code {
        case -7, -13, -30, -43, -45: return true
        default: return false
        }
    }

    /// The name of a libssh2 return code as in libssh2.h.
    static func codeName(_ code: Int32) -> String {
        let names: [Int32: String] = [
            0: "LIBSSH2_ERROR_NONE", -1: "LIBSSH2_ERROR_SOCKET_NONE", -2: "LIBSSH2_ERROR_BANNER_RECV",
            -3: "LIBSSH2_ERROR_BANNER_SEND", -4: "LIBSSH2_ERROR_INVALID_MAC", -5: "LIBSSH2_ERROR_KEX_FAILURE",
            -6: "LIBSSH2_ERROR_ALLOC", -7: "LIBSSH2_ERROR_SOCKET_SEND", -8: "LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE",
            -9: "LIBSSH2_ERROR_TIMEOUT", -10: "LIBSSH2_ERROR_HOSTKEY_INIT", -11: "LIBSSH2_ERROR_HOSTKEY_SIGN",
            -12: "LIBSSH2_ERROR_DECRYPT", -13: "LIBSSH2_ERROR_SOCKET_DISCONNECT", -14: "LIBSSH2_ERROR_PROTO",
            -15: "LIBSSH2_ERROR_PASSWORD_EXPIRED", -16: "LIBSSH2_ERROR_FILE", -17: "LIBSSH2_ERROR_METHOD_NONE",
            -18: "LIBSSH2_ERROR_AUTHENTICATION_FAILED", -19: "LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED",
            -20: "LIBSSH2_ERROR_CHANNEL_OUTOFORDER", -21: "LIBSSH2_ERROR_CHANNEL_FAILURE",
            -22: "LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED", -23: "LIBSSH2_ERROR_CHANNEL_UNKNOWN",
            -24: "LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED", -25: "LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED",
            -26: "LIBSSH2_ERROR_CHANNEL_CLOSED", -27: "LIBSSH2_ERROR_CHANNEL_EOF_SENT",
            -28: "LIBSSH2_ERROR_SCP_PROTOCOL", -29: "LIBSSH2_ERROR_ZLIB", -30: "LIBSSH2_ERROR_SOCKET_TIMEOUT",
            -31: "LIBSSH2_ERROR_SFTP_PROTOCOL", -32: "LIBSSH2_ERROR_REQUEST_DENIED",
            -33: "LIBSSH2_ERROR_METHOD_NOT_SUPPORTED", -34: "LIBSSH2_ERROR_INVAL",
            -35: "LIBSSH2_ERROR_INVALID_POLL_TYPE", -36: "LIBSSH2_ERROR_PUBLICKEY_PROTOCOL",
            -37: "LIBSSH2_ERROR_EAGAIN", -38: "LIBSSH2_ERROR_BUFFER_TOO_SMALL", -39: "LIBSSH2_ERROR_BAD_USE",
            -40: "LIBSSH2_ERROR_COMPRESS", -41: "LIBSSH2_ERROR_OUT_OF_BOUNDARY", -42: "LIBSSH2_ERROR_AGENT_PROTOCOL",
            -43: "LIBSSH2_ERROR_SOCKET_RECV", -44: "LIBSSH2_ERROR_ENCRYPT", -45: "LIBSSH2_ERROR_BAD_SOCKET",
            -46: "LIBSSH2_ERROR_KNOWN_HOSTS", -47: "LIBSSH2_ERROR_CHANNEL_WINDOW_FULL",
            -48: "LIBSSH2_ERROR_KEYFILE_AUTH_FAILED", -49: "LIBSSH2_ERROR_RANDGEN",
        ]
        return names[code] ?? "libssh2 error"
    }

    /// The name of an SFTP status code (`libssh2_sftp_last_error`).
    static func sftpStatusName(_ status: UInt) -> String {
        let names: [UInt: String] = [
            1: "end of file", 2: "no such file", 3: "permission denied", 4: "failure", 5: "bad message",
            6: "no connection", 7: "connection lost", 8: "operation unsupported", 9: "invalid handle",
            10: "no such path", 11: "file already exists", 12: "write protected", 13: "no media",
            14: "no space on file system", 15: "quota exceeded", 16: "unknown principal", 17: "lock conflict",
            18: "directory not empty", 19: "not a directory", 20: "invalid file name", 21: "link loop",
        ]
        return names[status] ?? "SFTP status \(status)"
    }
}
