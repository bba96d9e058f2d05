import Foundation
import Testing
import MeridianBasics
@testable import MeridianEngine
import MeridianPlanning
import MeridianSSH
import MeridianTestHosts

/// Observation in one round trip against a real sshd test host on 127.0.72.x.
@Suite struct HostObserverTests {
    @Test func observesFilesUnmanagedFilesAndTakesTheLockInOneCommand() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.72")
        let host = cluster.hosts[0]
        let root = host.root
        try FileManager.default.createDirectory(atPath: root + "/config/inference", withIntermediateDirectories: true)
        try "max_tokens: 1\n".write(toFile: root + "/config/inference/server.yaml", atomically: true, encoding: .utf8)
        try "stray\n".write(toFile: root + "/config/inference/by hand $(x).txt", atomically: true, encoding: .utf8)
        let desired = DesiredHostState(region: "eu-west", host: host.name, address: host.address, root: root, roles: ["inference"],
                                       files: [ManagedFile(path: "config/inference/server.yaml", content: .bytes(Data("max_tokens: 2\n".utf8)), source: "test")],
                                       releases: [], components: [])
        let endpoint = SSHEndpoint(region: "eu-west", hostName: host.name, address: host.address, port: host.port, user: cluster.user,
                                   identityFiles: [cluster.identityFile], hostKeyPolicy: HostKeyPolicy(pinnedKeys: [host.hostKeyLine]))
        let session = try await SSHSession.open(endpoint)
        let lock = LockRequest(holder: "tester@control", runID: "run-1", pid: 42, ttlSeconds: 60)
        let first = try await HostObserver.observe(ObserveScript(desired: desired, lock: lock), on: session)
        #expect(first.lock == .acquired)
        #expect(first.state.files["config/inference/server.yaml"] != nil)
        #expect(first.state.fileContents["config/inference/server.yaml"] == Data("max_tokens: 1\n".utf8))
        #expect(first.state.unmanagedFiles == ["config/inference/by hand $(x).txt"])

        let other = LockRequest(holder: "someone@else", runID: "run-2", pid: 7, ttlSeconds: 60)
        let second = try await HostObserver.observe(ObserveScript(desired: desired, lock: other), on: session)
        guard case .heldByOther(let holder) = second.lock else { Issue.record("expected the lock to be held, got \(second.lock)"); return }
        #expect(holder?.holder == "tester@control")
        await session.close()
    }
}
