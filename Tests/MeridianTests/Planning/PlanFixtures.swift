import Foundation
import MeridianModel
import MeridianBasics
@testable import MeridianPlanning

/// A small fleet in desired and observed form, shared by the planner and
/// rendering tests: eu-west has one host with every kind of change and one in
/// sync, us-east has a fresh host, uk-south is entirely in sync.
enum PlanFixtures {
    static let dbPassword = SecretReference(source: .environment, name: "KB_DB_PASSWORD")
    static let basis = PlanBasis(
        fleetFiles: ["meridian.yaml": SHA256.hex("fleet"), "regions/eu-west.yaml": SHA256.hex("eu"), "templates/inference.yaml": SHA256.hex("t")],
        gitCommit: "0123456789abcdef0123456789abcdef01234567"
    )

    static func bundle(_ region: String, rules: [String]) -> String {
        "{\n  \"region\": \"\(region)\",\n  \"rules\": [\n" + rules.map { "    \"\($0)\"" }.joined(separator: ",\n") + "\n  ]\n}\n"
    }

    static func inferenceConfig(region: String, maxTokens: Int) -> String {
        "# rendered by meridian for \(region)\nlisten: 127.0.0.1\nmodel: llama-3-8b\nmax_tokens: \(maxTokens)\ntimeout_s: 30\nlog_level: info\nregion: \(region)\n"
    }

    static func kbConfig(region: String, chunk: Int) -> String {
        "region = \(region)\nchunk_size = \(chunk)\noverlap = 64\nindex = /srv/meridian/data/index\n"
    }

    /// The masked rendering of the knowledge-base secrets file.
    static func kbSecrets(user: String) -> ManagedFileContent {
        let template = Template("db_user={{ vars.db_user }}\ndb_password={{ vars.db_password }}\n")
        let rendered = try! template.render(["vars.db_user": .text(user), "vars.db_password": .secret(dbPassword)], secrets: MaskingSecretResolver()).get()
        return .sensitive(masked: rendered.text, references: rendered.secretReferences)
    }

    static func desiredHost(region: String, host: String, address: String, inference: String, maxTokens: Int, chunk: Int, rules: [String], dbUser: String = "kb") -> DesiredHostState {
        DesiredHostState(
            region: region, host: host, address: address, root: "/srv/meridian", roles: ["gateway", "inference", "knowledge-base"],
            files: [
                ManagedFile(path: "config/inference/inference.yaml", content: .bytes(Data(inferenceConfig(region: region, maxTokens: maxTokens).utf8)), source: "templates/inference.yaml (region \(region))", component: "inference"),
                ManagedFile(path: "config/knowledge-base/kb.conf", content: .bytes(Data(kbConfig(region: region, chunk: chunk).utf8)), source: "templates/kb.conf (region \(region))", component: "knowledge-base"),
                ManagedFile(path: "config/knowledge-base/secrets.env", content: kbSecrets(user: dbUser), source: "templates/secrets.env (region \(region))", component: "knowledge-base"),
                ManagedFile(path: DesiredHostState.governanceBundlePath, content: .bytes(Data(bundle(region, rules: rules).utf8)), source: "governance bundle of \(region)"),
            ],
            releases: [
                ReleaseRequirement(component: "inference", version: inference, artifact: "inference-\(inference).tar.gz", sha256: SHA256.hex("inference-\(inference)")),
                ReleaseRequirement(component: "knowledge-base", version: "2.0.0", artifact: "knowledge-base-2.0.0.tar.gz", sha256: SHA256.hex("kb-2.0.0")),
            ],
            components: [
                ComponentSlotLayout(component: "inference", version: inference, address: "10.0.1.5", bluePort: 8081, greenPort: 8082, startCommand: ["bin/inference", "--config", "../../config/inference/inference.yaml"], healthPath: "/health"),
                ComponentSlotLayout(component: "knowledge-base", version: "2.0.0", address: "10.0.1.5", bluePort: 9081, greenPort: 9082, startCommand: ["bin/kb"], healthPath: "/healthz"),
            ]
        )
    }

    /// The observation of a host on which `applied` was applied exactly, with
    /// both components running; sensitive files hash to a stand-in for the
    /// real content, which the planner must never put in a plan.
    static func observedInSync(_ applied: DesiredHostState, realSecretContent: String = "db_user=kb\ndb_password=hunter2\n") -> ObservedHostState {
        var files: [String: ObservedFile] = [:]
        var manifestFiles: [String: ManifestFile] = [:]
        for file in applied.files {
            switch file.content {
            case .bytes(let data):
                files[file.path] = .regular(sha256: SHA256.hex(data), mode: file.mode, size: data.count)
                manifestFiles[file.path] = ManifestFile(sha256: SHA256.hex(data), maskedSHA256: nil, mode: file.mode, component: file.component)
            case .sensitive:
                files[file.path] = .regular(sha256: SHA256.hex(realSecretContent), mode: file.mode, size: realSecretContent.utf8.count)
                manifestFiles[file.path] = ManifestFile(sha256: nil, maskedSHA256: file.content.fingerprint, mode: file.mode, component: file.component)
            }
        }
        var components: [String: ManifestComponent] = [:]
        var slots: [ObservedSlotLink] = []
        var processes: [ObservedProcess] = []
        let active = ComponentSlotLayout.firstSlot
        for (index, layout) in applied.components.enumerated() {
            components[layout.component] = ManifestComponent(
                activeSlot: active,
                blue: ManifestSlot(version: active == .blue ? layout.version : nil, address: layout.address, port: layout.bluePort, weight: active == .blue ? 100 : 0),
                green: ManifestSlot(version: active == .green ? layout.version : nil, address: layout.address, port: layout.greenPort, weight: active == .green ? 100 : 0)
            )
            slots.append(ObservedSlotLink(component: layout.component, slot: active, target: "../../releases/\(layout.component)/\(layout.version)"))
            slots.append(ObservedSlotLink(component: layout.component, slot: active.other, target: nil))
            processes.append(ObservedProcess(component: layout.component, slot: active, pid: 4100 + index, alive: true))
        }
        let manifest = HostManifest(
            revision: "run-41", appliedAt: "2026-11-20T09:00:00Z", appliedBy: "ci@runner",
            files: manifestFiles,
            releases: applied.releases.map { ManifestRelease(component: $0.component, version: $0.version, sha256: $0.sha256) },
            components: components
        )
        return ObservedHostState(
            manifest: .present(manifest, sha256: SHA256.hex(manifest.encoded())),
            files: files,
            releases: applied.releases.map { ObservedRelease(component: $0.component, version: $0.version) }.sorted(),
            slots: slots,
            processes: processes
        )
    }

    static let euRulesBefore = ["no-training-on-customer-data", "pii-redaction"]
    static let euRulesAfter = ["no-training-on-customer-data", "pii-redaction", "retention-30d"]

    /// eu-west/h1 as last applied: inference 1.2.0, max_tokens 2048, chunk 512, an extra old file.
    static var euH1Applied: DesiredHostState {
        var host = desiredHost(region: "eu-west", host: "h1", address: "10.0.1.11", inference: "1.2.0", maxTokens: 2048, chunk: 512, rules: euRulesBefore, dbUser: "kb")
        host.files.append(ManagedFile(path: "config/inference/legacy.yaml", content: .bytes(Data("legacy: true\n".utf8)), source: "templates/legacy.yaml", component: "inference"))
        return host
    }

    static var desired: [DesiredHostState] {
        [
            desiredHost(region: "us-east", host: "h1", address: "10.0.2.11", inference: "1.3.0", maxTokens: 4096, chunk: 512, rules: ["us-baseline"]),
            desiredHost(region: "eu-west", host: "h2", address: "10.0.1.12", inference: "1.2.0", maxTokens: 2048, chunk: 512, rules: euRulesAfter),
            desiredHost(region: "eu-west", host: "h1", address: "10.0.1.11", inference: "1.3.0", maxTokens: 2048, chunk: 768, rules: euRulesAfter, dbUser: "kb_reader"),
            desiredHost(region: "uk-south", host: "h1", address: "10.0.3.11", inference: "1.2.0", maxTokens: 2048, chunk: 512, rules: ["uk-baseline"]),
        ]
    }

    static var observed: [HostID: ObservedHostState] {
        var euH1 = observedInSync(euH1Applied)
        // The bundle's previous content comes back from the observation (its hash differed).
        euH1.fileContents[DesiredHostState.governanceBundlePath] = Data(bundle("eu-west", rules: euRulesBefore).utf8)
        euH1.fileContents["config/knowledge-base/kb.conf"] = Data(kbConfig(region: "eu-west", chunk: 512).utf8)
        let euH2 = observedInSync(desired[1])
        let ukH1 = observedInSync(desired[3])
        // us-east/h1 is a fresh machine: observed, with nothing of meridian's on it.
        return ["eu-west/h1": euH1, "eu-west/h2": euH2, "uk-south/h1": ukH1, "us-east/h1": ObservedHostState()]
    }

    /// Earlier masked renderings, as the state store would provide them.
    static var previousContents: [String: Data] {
        let old = kbSecrets(user: "kb")
        return [old.fingerprint: old.displayBytes]
    }

    static var plan: Plan {
        Planner.plan(desired: desired, observed: observed, basis: basis, previousContents: previousContents)
    }
}
