import CLibSSH2
import Foundation
import MeridianBasics

/// What an upload did. Invariant: `.unchanged` means the destination already
/// held exactly these bytes (same SHA-256) and nothing was written.
public enum UploadOutcome: Sendable, Equatable {
    case transferred(bytes: Int)
    case unchanged
}

/// A numeric owner for an uploaded file.
public struct RemoteOwner: Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }
}

extension SSHSession {
    /// The marker in the names of upload temporaries: `<dest>.meridian-tmp-<hex>`.
    /// A file carrying it was left by an interrupted upload and is safe to delete.
    public static let temporaryMarker = UploadNaming.temporaryMarker

    /// Writes `data` to `remotePath` atomically: to a temporary name in the same
    /// folder, fsync'd, given its mode (and owner), then renamed over the
    /// destination, so readers see the old file or the new one, never a part.
    /// Skips the transfer when the destination's SHA-256 already matches.
    /// `mode` nil keeps the destination's mode (0644 for a new file); the
    /// destination's owner is kept unless `owner` is given.
    public func upload(_ data: Data, to remotePath: String, mode: UInt32? = nil, owner: RemoteOwner? = nil, timeout: Duration? = nil) async throws -> UploadOutcome {
        try await onQueue { try self.uploadOnQueue(.bytes(data), to: remotePath, mode: mode, owner: owner, timeout: timeout) }
    }

    /// Uploads a local file (see `upload(_:to:mode:owner:timeout:)`), read and
    /// sent in chunks of `SHA256.streamChunk` bytes: memory stays constant
    /// whatever the file's size.
    public func upload(file localPath: String, to remotePath: String, mode: UInt32? = nil, owner: RemoteOwner? = nil, timeout: Duration? = nil) async throws -> UploadOutcome {
        try await onQueue { try self.uploadOnQueue(.file(localPath), to: remotePath, mode: mode, owner: owner, timeout: timeout) }
    }

    /// Reads a whole remote file.
    public func download(_ remotePath: String, timeout: Duration? = nil) async throws -> Data {
        try await onQueue { try self.downloadOnQueue(remotePath, timeout: timeout) }
    }

    // MARK: - On the queue

    private func sftp(deadline: ContinuousClock.Instant, path: String) throws -> OpaquePointer {
        let session = try requireUsable()
        if let existing = sftpHandle { return existing }
        switch try retryPointer(until: deadline, { libssh2_sftp_init(session) }) {
        case .success(let sftp):
            sftpHandle = sftp
            return sftp
        case .failure(let failed):
            throw transferFailure(path: path, operation: "starting SFTP", code: failed.code)
        }
    }

    private func transferFailure(path: String, operation: String, code: Int32) -> SSHError {
        if LibSSH2.isSocketFailure(code) { return failure("transfer of \(path)", code: code) }
        var reason = "\(operation): \(LibSSH2.codeName(code))"
        if code == -31, let sftp = sftpHandle {
            reason = "\(operation): \(LibSSH2.sftpStatusName(libssh2_sftp_last_error(sftp)))"
        } else {
            let message = lastErrorMessage()
            if !message.isEmpty { reason += ": \(message)" }
        }
        return SSHError(.transferFailed(path: path, reason: reason), at: place)
    }

    private func stat(_ path: String, sftp: OpaquePointer, deadline: ContinuousClock.Instant) throws -> LIBSSH2_SFTP_ATTRIBUTES? {
        var attributes = LIBSSH2_SFTP_ATTRIBUTES()
        let code = try retry(until: deadline) {
            libssh2_sftp_stat_ex(sftp, path, UInt32(path.utf8.count), LibSSH2.sftpStat, &attributes)
        }
        if code == 0 { return attributes }
        if code == -31, libssh2_sftp_last_error(sftp) == LibSSH2.sftpNoSuchFile { return nil }
        throw transferFailure(path: path, operation: "stat", code: code)
    }

    /// What an upload sends: bytes in memory, or a local file streamed from disk.
    enum UploadSource {
        case bytes(Data)
        case file(String)
    }

    private func uploadOnQueue(_ source: UploadSource, to remotePath: String, mode: UInt32?, owner: RemoteOwner?, timeout: Duration?) throws -> UploadOutcome {
        let limit = timeout ?? endpoint.commandTimeout
        let start = ContinuousClock.now
        let deadline = start + limit
        var metadata = SSHLog.place(endpoint)
        metadata["path"] = .string(remotePath)
        do {
            let outcome: UploadOutcome
            do {
                outcome = try uploadSteps(source, to: remotePath, mode: mode, owner: owner, limit: limit, deadline: deadline)
            } catch is TimedOut {
                markBroken("an upload timed out")
                throw SSHError(.commandTimeout(command: "upload of \(remotePath)", seconds: Self.seconds(limit)), at: place)
            }
            metadata["ms"] = SSHLog.milliseconds(since: start)
            switch outcome {
            case .transferred(let bytes): metadata["outcome"] = "transferred"; metadata["bytes"] = .stringConvertible(bytes)
            case .unchanged: metadata["outcome"] = "unchanged"
            }
            SSHLog.logger.debug("upload", metadata: metadata)
            return outcome
        } catch {
            metadata["ms"] = SSHLog.milliseconds(since: start)
            metadata["error"] = .string("\(error)")
            SSHLog.logger.debug("upload failed", metadata: metadata)
            throw error
        }
    }

    private func uploadSteps(_ source: UploadSource, to remotePath: String, mode: UInt32?, owner: RemoteOwner?, limit: Duration, deadline: ContinuousClock.Instant) throws -> UploadOutcome {
        let size: Int
        let localHash: () throws -> String
        switch source {
        case .bytes(let data):
            size = data.count
            localHash = { SHA256.hex(data) }
        case .file(let path):
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path), let bytes = attributes[.size] as? NSNumber else {
                throw SSHError(.transferFailed(path: remotePath, reason: "cannot read the local file \(path)"), at: place)
            }
            size = bytes.intValue
            localHash = {
                do { return try SHA256.hexOfFile(atPath: path).hex } catch {
                    throw SSHError(.transferFailed(path: remotePath, reason: "cannot read the local file \(error)"), at: self.place)
                }
            }
        }
        let sftp = try sftp(deadline: deadline, path: remotePath)
        let existing = try stat(remotePath, sftp: sftp, deadline: deadline)
        let wantedMode = mode ?? existing.map { UInt32($0.permissions & 0o7777) } ?? 0o644
        let wantedOwner = owner ?? existing.map { RemoteOwner(uid: UInt32($0.uid), gid: UInt32($0.gid)) }

        if let existing, existing.filesize == UInt64(size) {
            let check = try execOnQueue(RemoteCommand(["sha256sum", "--", remotePath]), timeout: deadline - ContinuousClock.now)
            if check.succeeded, try check.stdoutText.prefix(64) == localHash() {
                try setAttributes(remotePath, sftp: sftp, mode: mode, owner: owner, current: existing, deadline: deadline)
                return .unchanged
            }
        }

        let temporary = remotePath + Self.temporaryMarker + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        guard let handle = try openForWriting(temporary, sftp: sftp, deadline: deadline, destination: remotePath) else {
            throw transferFailure(path: remotePath, operation: "creating \(temporary)", code: libssh2_session_last_errno(try requireUsable()))
        }
        var handleOpen = true
        do {
            switch source {
            case .bytes(let data): try writeAll(data, handle: handle, deadline: deadline, path: remotePath)
            case .file(let path): try writeFile(path, size: size, handle: handle, deadline: deadline, path: remotePath)
            }
            let synced = try retry(until: deadline) { libssh2_sftp_fsync(handle) }
            let needsRemoteSync = synced != 0 && synced == -31 && libssh2_sftp_last_error(sftp) == LibSSH2.sftpOpUnsupported
            if synced != 0 && !needsRemoteSync { throw transferFailure(path: remotePath, operation: "fsync", code: synced) }
            let closed = try retry(until: deadline) { libssh2_sftp_close_handle(handle) }
            handleOpen = false
            guard closed == 0 else { throw transferFailure(path: remotePath, operation: "closing \(temporary)", code: closed) }
            if needsRemoteSync {
                // Servers without the fsync extension: coreutils `sync FILE` fsyncs that file.
                _ = try runStep(RemoteCommand(["sync", "--", temporary]), deadline: deadline, path: remotePath)
            }
            try setAttributes(temporary, sftp: sftp, mode: wantedMode, owner: wantedOwner, current: nil, deadline: deadline)
            // `mv` is rename(2) within one folder: atomic, and it replaces an
            // existing destination, which SFTP's own rename refuses to do.
            _ = try runStep(RemoteCommand(["mv", "-f", "--", temporary, remotePath]), deadline: deadline, path: remotePath)
            return .transferred(bytes: size)
        } catch {
            if handleOpen { _ = try? retry(until: ContinuousClock.now + .seconds(1)) { libssh2_sftp_close_handle(handle) } }
            if (try? requireUsable()) != nil {
                _ = try? retry(until: ContinuousClock.now + .seconds(2)) {
                    libssh2_sftp_unlink_ex(sftp, temporary, UInt32(temporary.utf8.count))
                }
            }
            throw error
        }
    }

    private func openForWriting(_ path: String, sftp: OpaquePointer, deadline: ContinuousClock.Instant, destination: String) throws -> OpaquePointer? {
        let flags = LibSSH2.sftpWrite | LibSSH2.sftpCreate | LibSSH2.sftpExclusive
        switch try retryPointer(until: deadline, {
            libssh2_sftp_open_ex(sftp, path, UInt32(path.utf8.count), flags, 0o600, LibSSH2.sftpOpenFile)
        }) {
        case .success(let handle): return handle
        case .failure(let failed): throw transferFailure(path: destination, operation: "creating \(path)", code: failed.code)
        }
    }

    private func writeAll(_ data: Data, handle: OpaquePointer, deadline: ContinuousClock.Instant, path: String) throws {
        try data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self) else { return }
            var offset = 0
            while offset < raw.count {
                // Large slices let libssh2 pipeline many SFTP writes per round trip.
                let length = min(raw.count - offset, 1 << 20)
                let written = libssh2_sftp_write(handle, base + offset, length)
                if written >= 0 {
                    offset += written
                } else if Int32(written) == LibSSH2.eagain {
                    try waitSocket(until: deadline)
                } else {
                    throw transferFailure(path: path, operation: "writing", code: Int32(written))
                }
            }
        }
    }

    /// Streams a local file into an open remote handle, one chunk at a time;
    /// refuses a file whose size changed while it was sent.
    private func writeFile(_ localPath: String, size: Int, handle: OpaquePointer, deadline: ContinuousClock.Instant, path: String) throws {
        guard let file = FileHandle(forReadingAtPath: localPath) else {
            throw SSHError(.transferFailed(path: path, reason: "cannot read the local file \(localPath)"), at: place)
        }
        defer { try? file.close() }
        var sent = 0
        while true {
            let chunk: Data
            do { chunk = try file.read(upToCount: SHA256.streamChunk) ?? Data() } catch {
                throw SSHError(.transferFailed(path: path, reason: "reading the local file \(localPath): \(error.localizedDescription)"), at: place)
            }
            if chunk.isEmpty { break }
            try writeAll(chunk, handle: handle, deadline: deadline, path: path)
            sent += chunk.count
        }
        guard sent == size else {
            throw SSHError(.transferFailed(path: path, reason: "the local file \(localPath) changed size while it was sent (\(size) → \(sent) bytes)"), at: place)
        }
    }

    private func setAttributes(_ path: String, sftp: OpaquePointer, mode: UInt32?, owner: RemoteOwner?, current: LIBSSH2_SFTP_ATTRIBUTES?, deadline: ContinuousClock.Instant) throws {
        var attributes = LIBSSH2_SFTP_ATTRIBUTES()
        if let mode, current.map({ UInt32($0.permissions & 0o7777) != mode }) ?? true {
            attributes.flags |= LibSSH2.sftpAttrPermissions
            attributes.permissions = UInt(mode)
        }
        if let owner, current.map({ UInt32($0.uid) != owner.uid || UInt32($0.gid) != owner.gid }) ?? true {
            attributes.flags |= LibSSH2.sftpAttrUIDGID
            attributes.uid = UInt(owner.uid)
            attributes.gid = UInt(owner.gid)
        }
        guard attributes.flags != 0 else { return }
        let code = try retry(until: deadline) {
            libssh2_sftp_stat_ex(sftp, path, UInt32(path.utf8.count), LibSSH2.sftpSetStat, &attributes)
        }
        guard code == 0 else { throw transferFailure(path: path, operation: "setting mode/owner", code: code) }
    }

    private func runStep(_ command: RemoteCommand, deadline: ContinuousClock.Instant, path: String) throws -> CommandResult {
        let result = try execOnQueue(command, timeout: deadline - ContinuousClock.now)
        guard result.succeeded else {
            throw SSHError(.transferFailed(path: path, reason: "`\(command.line)` exited with status \(result.exitStatus): \(result.stderrTail())"), at: place)
        }
        return result
    }

    private func downloadOnQueue(_ remotePath: String, timeout: Duration?) throws -> Data {
        let limit = timeout ?? endpoint.commandTimeout
        let deadline = ContinuousClock.now + limit
        do {
            let sftp = try sftp(deadline: deadline, path: remotePath)
            let handle: OpaquePointer
            switch try retryPointer(until: deadline, {
                libssh2_sftp_open_ex(sftp, remotePath, UInt32(remotePath.utf8.count), LibSSH2.sftpRead, 0, LibSSH2.sftpOpenFile)
            }) {
            case .success(let opened): handle = opened
            case .failure(let failed): throw transferFailure(path: remotePath, operation: "opening", code: failed.code)
            }
            defer { _ = try? retry(until: ContinuousClock.now + .seconds(1)) { libssh2_sftp_close_handle(handle) } }
            var contents = Data()
            let capacity = 256 * 1024
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
            defer { buffer.deallocate() }
            while true {
                let count = libssh2_sftp_read(handle, buffer, capacity)
                if count > 0 {
                    contents.append(Data(bytes: buffer, count: count))
                } else if count == 0 {
                    return contents
                } else if Int32(count) == LibSSH2.eagain {
                    try waitSocket(until: deadline)
                } else {
                    throw transferFailure(path: remotePath, operation: "reading", code: Int32(count))
                }
            }
        } catch is TimedOut {
            markBroken("a download timed out")
            throw SSHError(.commandTimeout(command: "download of \(remotePath)", seconds: Self.seconds(limit)), at: place)
        }
    }
}
