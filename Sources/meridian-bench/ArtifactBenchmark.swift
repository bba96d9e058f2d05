import Foundation
import MeridianBasics
import MeridianEngine
import MeridianSSH
import MeridianTestHosts

/// `meridian-bench artifact`: packs a folder holding one large file with the
/// artifact preparation apply uses, hashes it, uploads it to one sshd test
/// host with the SFTP upload apply uses, checks the host's copy, and prints
/// this process's peak resident memory after each phase. OpenSSH's
/// `ssh HOST 'cat > FILE' < FILE` of the same archive is the time baseline.
struct ArtifactBenchmarkOptions {
    var mebibytes = 1024
    var prefix = "127.0.62"
    var directory: String?

    static func parse(_ arguments: ArraySlice<String>) -> ArtifactBenchmarkOptions? {
        var options = ArtifactBenchmarkOptions()
        var rest = arguments
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst() else { return nil }
            switch flag {
            case "--mib":
                guard let size = Int(value), (1...65536).contains(size) else { return nil }
                options.mebibytes = size
            case "--prefix": options.prefix = value
            case "--dir": options.directory = value
            default: return nil
            }
        }
        return options
    }
}

/// The peak resident set of this process so far, in KiB.
func peakResidentKiB() -> Int { statusKiB("VmHWM") }

/// Writes `mebibytes` MiB of pseudo-random bytes, one MiB at a time.
func writeLargeFile(_ path: String, mebibytes: Int) throws {
    guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
        throw BenchError(description: "cannot create \(path)")
    }
    defer { try? handle.close() }
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    var block = [UInt64](repeating: 0, count: (1 << 20) / 8)
    for _ in 0..<mebibytes {
        for index in block.indices {
            // xorshift64*: cheap bytes that no compression or deduplication shortcuts.
            state ^= state >> 12; state ^= state << 25; state ^= state >> 27
            block[index] = state &* 0x2545_F491_4F6C_DD1D
        }
        try block.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
    }
}

func runArtifactBenchmark(_ options: ArtifactBenchmarkOptions) async throws {
    let work = options.directory ?? NSTemporaryDirectory() + "meridian-bench-artifact-\(getpid())"
    try FileManager.default.createDirectory(atPath: work + "/release", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    print("writing \(options.mebibytes) MiB into \(work)/release …")
    try writeLargeFile(work + "/release/model.bin", mebibytes: options.mebibytes)
    try "#!/bin/sh\nexec sleep 1000\n".write(toFile: work + "/release/start", atomically: true, encoding: .utf8)
    let startPeak = peakResidentKiB()
    print("peak RSS before packing: \(startPeak / 1024) MiB")

    var packed: (sha256: String, path: String)!
    let packing = try await measure {
        switch ArtifactPreparation.pack(folder: work + "/release", cacheFolder: URL(fileURLWithPath: work + "/cache")) {
        case .success(let result): packed = result
        case .failure(let failure): throw BenchError(description: "packing failed: \(failure)")
        }
    }
    let archiveBytes = (try FileManager.default.attributesOfItem(atPath: packed.path)[.size] as? NSNumber)?.intValue ?? 0
    print("packed and hashed \(archiveBytes / (1 << 20)) MiB in \(format(packing.wall)) s: sha256 \(packed.sha256.prefix(16))…; peak RSS \(peakResidentKiB() / 1024) MiB")

    let cluster = try TestHostCluster(count: 1, addressPrefix: options.prefix)
    let host = cluster.hosts[0]
    let endpoint = endpoints(cluster, [host])[0]
    let session = try await SSHSession.open(endpoint)
    let destination = host.root + "/incoming.tar"
    let upload = try await measure {
        let outcome = try await session.upload(file: packed.path, to: destination, mode: 0o600, timeout: .seconds(1800))
        guard case .transferred(let bytes) = outcome, bytes == archiveBytes else {
            throw BenchError(description: "upload reported \(outcome), expected \(archiveBytes) bytes transferred")
        }
    }
    let check = try await session.run(RemoteCommand(["sha256sum", "--", destination]), timeout: .seconds(600))
    guard check.stdoutText.prefix(64) == packed.sha256 else {
        throw BenchError(description: "the host's copy hashes to \(check.stdoutText.prefix(64)), not \(packed.sha256)")
    }
    let peakAfterUpload = peakResidentKiB()
    print("uploaded over SFTP in \(format(upload.wall)) s (\(format(Double(archiveBytes) / 1e6 / upload.wall)) MB/s), the host's sha256 matches; peak RSS \(peakAfterUpload / 1024) MiB")
    // A second upload of the same bytes is skipped by the hash check (hashed as a stream again).
    let again = try await session.upload(file: packed.path, to: destination, mode: 0o600, timeout: .seconds(1800))
    guard again == .unchanged else { throw BenchError(description: "a second upload of the same bytes reported \(again)") }
    await session.close()

    try FileManager.default.removeItem(atPath: destination)
    let openssh = try await measure {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ssh")
        process.arguments = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=\(cluster.knownHostsFile)",
                             "-o", "KexAlgorithms=curve25519-sha256", "-i", cluster.identityFile, "-l", cluster.user, host.address, "cat > \(destination)"]
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: packed.path))
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw BenchError(description: "ssh cat exited \(process.terminationStatus)") }
    }
    let finalPeak = peakResidentKiB()
    print("")
    print("| artifact | pack + hash | SFTP upload | OpenSSH `cat >` upload | upload ÷ OpenSSH | peak RSS of meridian |")
    print("|---|---|---|---|---|---|")
    print("| \(archiveBytes / (1 << 20)) MiB | \(format(packing.wall)) s | \(format(upload.wall)) s | \(format(openssh.wall)) s | \(format(upload.wall / openssh.wall)) | \(finalPeak / 1024) MiB (before packing: \(startPeak / 1024) MiB) |")
    if finalPeak > 100 * 1024 { print("peak RSS is above 100 MiB") }
}
