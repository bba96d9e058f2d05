import Foundation

/// Writes a local file so that readers see the old content or the new, never
/// a mix: a temporary file in the same folder, fsync, then rename. node_exporter's
/// textfile collector and report consumers rely on that.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o644) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw AtomicFileError(path: path, operation: "create the folder \(folder)", reason: error.localizedDescription)
        }
        let temporary = "\(folder)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw AtomicFileError(path: path, operation: "create \(temporary)", code: errno) }
        var ok = false
        defer {
            if !ok { unlink(temporary) }
        }
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Foundation.write(fd, raw.baseAddress!.advanced(by: offset), raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    let code = errno
                    close(fd)
                    throw AtomicFileError(path: path, operation: "write", code: code)
                }
                offset += written
            }
        }
        fchmod(fd, mode)
        if fsync(fd) != 0 { let code = errno; close(fd); throw AtomicFileError(path: path, operation: "fsync", code: code) }
        close(fd)
        guard rename(temporary, path) == 0 else { throw AtomicFileError(path: path, operation: "rename into place", code: errno) }
        ok = true
    }
}

/// A local file could not be written; says which step failed and why.
public struct AtomicFileError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var operation: String
    public var reason: String

    init(path: String, operation: String, reason: String) {
        self.path = path
        self.operation = operation
        self.reason = reason
    }

    init(path: String, operation: String, code: Int32) {
        self.init(path: path, operation: operation, reason: String(cString: strerror(code)))
    }

    public var description: String {
        "could not write \(path) (\(operation)): \(reason); check that the folder exists and is writable"
    }
}
