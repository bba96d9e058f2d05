import ArgumentParser
import Foundation
import MeridianBasics
import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianSSH

/// `meridian hosts check`: can meridian reach and use every host?
struct HostsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hosts",
        abstract: "Check the fleet's hosts.",
        subcommands: [HostsCheck.self],
        defaultSubcommand: HostsCheck.self
    )
}

struct HostsCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Connect to every host in parallel: reachability, host key, auth, round trip, and the programs meridian needs.",
        discussion: "Exits 1 when any host fails a check."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var selection: RegionSelection
    @Option(help: "Hosts checked at once (default: the fleet's parallelism).") var parallelism: Int?

    func run() async throws {
        let (fleet, _) = try fleetOptions.loadValid()
        try selection.check(against: fleet)
        let mapping = FleetEndpoints(fleet: fleet, fleetRoot: fleetOptions.root)
        let targets = mapping.endpoints(regions: selection.regions)
        let reports = await HostCheck.runAll(targets.map(\.endpoint), parallelism: parallelism ?? fleet.settings.defaults.parallelism)
        var rows = [["REGION", "HOST", "ADDRESS", "REACHABLE", "HOST KEY", "AUTH", "RTT", "NEEDS", "RESULT"]]
        var failures: [String] = []
        var failed = 0
        // A gateway loads nginx's JavaScript module only for a residency section, which every region has once the fleet has a rule.
        let residency = !ResidencyCompiler.compile(fleet).0.entries.isEmpty
        for (target, report) in zip(targets, reports) {
            let gateway = target.host.roles.contains(.gateway)
            let missing = report.capabilities.map { HostsCheck.missingPrograms($0, gateway: gateway, residency: residency) } ?? []
            let ok = report.failure == nil && missing.isEmpty
            rows.append([
                target.region.name, target.host.name, "\(target.endpoint.address):\(target.endpoint.port)",
                report.reached ? "yes" : "no",
                HostsCheck.describe(report.hostKeyStatus),
                report.authenticated ? "ok" : "no",
                report.roundTrip.map { String(format: "%.1fms", $0.seconds * 1000) } ?? "-",
                report.capabilities == nil ? "-" : (missing.isEmpty ? "ok" : "missing " + missing.joined(separator: ",")),
                ok ? "ok" : "FAIL",
            ])
            if !ok { failed += 1 }
            if let failure = report.failure { failures.append(failure.description) }
            else if !missing.isEmpty {
                let programs = missing.filter { $0 != HostsCheck.moduleColumn }
                if !programs.isEmpty {
                    failures.append("\(target.endpoint.place): \(programs.joined(separator: ", ")) not found on the host: install \(programs.contains("nginx") ? "them (nginx only on gateway hosts)" : "them")")
                }
                if missing.contains(HostsCheck.moduleColumn) { failures.append(NginxJavaScriptModule.missing(on: "\(target.endpoint.place)")) }
            }
        }
        Output.text(Table.render(rows))
        for failure in failures { Output.error(failure) }
        Output.line("\(targets.count - failed) of \(targets.count) hosts ok.")
        if failed > 0 { throw ExitCode(ExitStatus.failure) }
    }

    /// How the NEEDS column names nginx's JavaScript module.
    static let moduleColumn = "nginx-js"

    static func missingPrograms(_ capabilities: HostCapabilities, gateway: Bool, residency: Bool) -> [String] {
        var missing: [String] = []
        if !capabilities.sh { missing.append("sh") }
        if !capabilities.tar { missing.append("tar") }
        if !capabilities.sha256sum { missing.append("sha256sum") }
        if gateway && !capabilities.nginx { missing.append("nginx") }
        if gateway && residency && !capabilities.nginxJavaScript { missing.append(moduleColumn) }
        return missing
    }

    static func describe(_ status: HostCheckReport.HostKeyStatus) -> String {
        switch status {
        case .trusted: return "trusted"
        case .unknown: return "UNKNOWN"
        case .changed: return "CHANGED"
        case .revoked: return "REVOKED"
        case .notSeen: return "-"
        }
    }
}

/// Plain aligned columns, two spaces apart.
enum Table {
    static func render(_ rows: [[String]]) -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
