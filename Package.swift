// swift-tools-version:6.0
import PackageDescription

// Layers point one way: Basics → Model → Loading → Planning → State / SSH →
// Engine → CLI → the `meridian` executable. Each target's comment states its
// one purpose.
let package = Package(
    name: "meridian",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "meridian", targets: ["meridian"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Small pure building blocks with no domain knowledge: SHA-256
        // (swift-crypto, streamed over files), canonical JSON, edit distance,
        // durations.
        .target(name: "MeridianBasics", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),

        // The fleet as pure values: regions, hosts, components, policies,
        // versions, with the source location of every declared value.
        .target(name: "MeridianModel", dependencies: ["MeridianBasics"]),

        // Reads a fleet repository from YAML into the model and validates it,
        // collecting every problem as a located diagnostic.
        .target(
            name: "MeridianLoading",
            dependencies: ["MeridianModel", "MeridianBasics", .product(name: "Yams", package: "Yams")]
        ),

        // Pure decisions over a loaded fleet: governance rules, governance
        // bundles, the residency routing table, rendered desired state (with
        // the gateway's nginx configuration), plans.
        .target(name: "MeridianPlanning", dependencies: ["MeridianModel", "MeridianBasics"]),

        // libssh2 as a system library; only MeridianSSH imports it.
        .systemLibrary(
            name: "CLibSSH2",
            pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]
        ),

        // The one owner of SSH: sessions, host-key checks, exec, SFTP,
        // direct-tcpip probes, bounded parallel fan-out, remote argv quoting.
        .target(
            name: "MeridianSSH",
            dependencies: ["CLibSSH2", "MeridianBasics", .product(name: "Logging", package: "swift-log")]
        ),

        // The one owner of the database: runs, journal, applied manifests,
        // hash-chained audit log, leases, drift history, rollouts — behind a protocol.
        .target(
            name: "MeridianState",
            dependencies: ["MeridianBasics", .product(name: "GRDB", package: "GRDB.swift")]
        ),

        // The shared PostgreSQL store on postgres-nio; only this target imports
        // PostgresNIO, and it keeps no rule of its own (the rules live in
        // MeridianState and are shared with SQLite).
        .target(
            name: "MeridianPostgresState",
            dependencies: ["MeridianState", "MeridianBasics", .product(name: "PostgresNIO", package: "postgres-nio")]
        ),

        // Carries out decisions: observes hosts, applies plans, detects drift.
        .target(
            name: "MeridianEngine",
            dependencies: [
                "MeridianModel", "MeridianLoading", "MeridianPlanning", "MeridianSSH", "MeridianState", "MeridianBasics",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The command-line interface: parses arguments, calls the engine,
        // and is the only code that prints.
        .target(
            name: "MeridianCLI",
            dependencies: [
                "MeridianModel", "MeridianLoading", "MeridianPlanning", "MeridianEngine",
                "MeridianSSH", "MeridianState", "MeridianPostgresState", "MeridianBasics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The thin executable.
        .executableTarget(name: "meridian", dependencies: ["MeridianCLI"]),

        // Real sshd processes (and the nginx gateway steps start on them) on
        // loopback addresses, the example stack laid out in test fleets, HTTP
        // backends and a keep-alive client, for integration tests, benchmarks
        // and by-hand use, and what every test target shares: bounded polling
        // and a seeded random generator.
        .target(name: "MeridianTestHosts", dependencies: ["MeridianBasics"]),

        // Starts and stops test hosts by hand: `meridian-testhosts up --count N --dir D`.
        .executableTarget(name: "meridian-testhosts", dependencies: ["MeridianTestHosts"]),

        // Benchmarks that time meridian against a baseline measured in the same run.
        .executableTarget(
            name: "meridian-bench",
            dependencies: ["MeridianEngine", "MeridianSSH", "MeridianTestHosts", "MeridianBasics"]
        ),

        .testTarget(
            name: "MeridianTests",
            dependencies: ["MeridianBasics", "MeridianModel", "MeridianLoading", "MeridianPlanning", "MeridianTestHosts"],
            exclude: ["Golden"]
        ),
        .testTarget(
            name: "MeridianSSHTests",
            dependencies: ["MeridianSSH", "MeridianTestHosts", "MeridianBasics"]
        ),
        .testTarget(
            name: "MeridianStateTests",
            dependencies: ["MeridianState", "MeridianPostgresState", "MeridianTestHosts", "MeridianBasics", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "MeridianEngineTests",
            dependencies: ["MeridianEngine", "MeridianPlanning", "MeridianModel", "MeridianLoading", "MeridianSSH", "MeridianState", "MeridianTestHosts", "MeridianBasics"]
        ),
        .testTarget(
            name: "MeridianCLITests",
            dependencies: ["MeridianCLI", "MeridianEngine", "MeridianModel", "MeridianPlanning", "MeridianSSH", "MeridianTestHosts", "MeridianBasics"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
