import Foundation
import MeridianBasics
import MeridianSSH
import MeridianTestHosts
import Testing

/// SFTP upload and download against real sshd test hosts.
@Suite struct TransferTests {
    func temporaries(in folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.contains(SSHSession.temporaryMarker) }
    }

    func mode(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func uploadIsAtomicKeepsModeAndSkipsUnchanged() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.30")
        let host = cluster.hosts[0]
        let session = try await SSHSession.open(endpoint(cluster, host))
        let folder = host.root + "/config/it's a \"dir\""
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/app $(x).conf"

        let first = Data("version = 1\n".utf8)
        #expect(try await session.upload(first, to: path) == .transferred(bytes: first.count))
        #expect(FileManager.default.contents(atPath: path) == first)
        #expect(try mode(path) == 0o644)

        #expect(try await session.upload(first, to: path) == .unchanged)

        // An operator made it private: a new version keeps that mode.
        chmod(path, 0o600)
        let second = Data("version = 2\n".utf8)
        #expect(try await session.upload(second, to: path) == .transferred(bytes: second.count))
        #expect(FileManager.default.contents(atPath: path) == second)
        #expect(try mode(path) == 0o600)

        // An explicit mode wins, also when the content is unchanged.
        #expect(try await session.upload(second, to: path, mode: 0o640) == .unchanged)
        #expect(try mode(path) == 0o640)
        let script = Data("#!/bin/sh\necho hi\n".utf8)
        #expect(try await session.upload(script, to: folder + "/run.sh", mode: 0o755, owner: RemoteOwner(uid: 1, gid: 1)) == .transferred(bytes: script.count))
        let attributes = try FileManager.default.attributesOfItem(atPath: folder + "/run.sh")
        #expect(attributes[.posixPermissions] as? Int == 0o755)
        #expect((attributes[.ownerAccountID] as? NSNumber)?.intValue == 1)

        #expect(try await session.download(path) == second)
        let large = Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) })
        #expect(try await session.upload(large, to: folder + "/large.bin") == .transferred(bytes: large.count))
        #expect(try await session.download(folder + "/large.bin") == large)
        #expect(temporaries(in: folder).isEmpty)

        // A local file is streamed in chunks; the bytes that arrive are the file's.
        let localFile = NSTemporaryDirectory() + "meridian-upload-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).bin"
        let streamed = Data((0..<(SHA256.streamChunk * 3 + 12345)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 7) })
        try streamed.write(to: URL(fileURLWithPath: localFile))
        defer { unlink(localFile) }
        #expect(try await session.upload(file: localFile, to: folder + "/streamed.bin", mode: 0o600) == .transferred(bytes: streamed.count))
        #expect(FileManager.default.contents(atPath: folder + "/streamed.bin") == streamed)
        #expect(try await session.upload(file: localFile, to: folder + "/streamed.bin", mode: 0o600) == .unchanged)
        #expect(temporaries(in: folder).isEmpty)

        let missing = try #require(await sshError { _ = try await session.download(folder + "/absent") })
        #expect(missing.kindName == "transferFailed")
        #expect(missing.description.contains("no such file"))
        let noFolder = try #require(await sshError { _ = try await session.upload(first, to: host.root + "/no/such/folder/file") })
        #expect(noFolder.kindName == "transferFailed")
        await session.close()
    }

    @Test func killedMidUploadLeavesNoPartialFile() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.31")
        let host = cluster.hosts[0]
        let session = try await SSHSession.open(endpoint(cluster, host))
        let path = host.root + "/bundle.json"
        let old = Data("{\"old\": true}\n".utf8)
        #expect(try await session.upload(old, to: path) == .transferred(bytes: old.count))

        let big = Data(count: 256 * 1024 * 1024)
        let upload = Task { await sshError { _ = try await session.upload(big, to: path) } }
        // Kill the host once the temporary file is being written.
        let started = await eventually {
            temporaries(in: host.root).contains { name in
                ((try? FileManager.default.attributesOfItem(atPath: host.root + "/" + name)[.size] as? Int) ?? 0) > 0
            }
        }
        #expect(started)
        cluster.kill(host)
        let error = try #require(await upload.value)
        #expect(["connectionDropped", "transferFailed"].contains(error.kindName))
        #expect(FileManager.default.contents(atPath: path) == old)
        // What is left is recognisable as an interrupted upload's temporary.
        for name in temporaries(in: host.root) { #expect(name.hasPrefix("bundle.json" + SSHSession.temporaryMarker)) }
        await session.close()
    }
}
