import Foundation

/// What one drift run found across the fleet: per region, the hosts looked
/// at, the findings, and the pending changes (the fleet repository differs
/// from what was applied; that is not drift). Its JSON form is documented in
/// docs/drift.md, `format_version` 1.
public struct DriftReport: Sendable, Codable, Equatable {
    public var formatVersion: Int = 1
    public var startedAt: Date
    public var durationSeconds: Double
    public var regions: [RegionDrift]

    public init(startedAt: Date, durationSeconds: Double, regions: [RegionDrift]) {
        self.startedAt = startedAt
        self.durationSeconds = durationSeconds
        self.regions = regions.sorted { $0.region < $1.region }
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", startedAt = "started_at", durationSeconds = "duration_seconds", regions
    }

    public var findings: [DriftFinding] { regions.flatMap(\.findings).sorted() }
    public var unexaminedHosts: [HostExamination] { regions.flatMap(\.hosts).filter { !$0.examined } }

    /// 0 clean, 2 drift, 1 when some host could not be looked at (the report
    /// still lists everything found elsewhere).
    public var exitCode: Int32 {
        if !unexaminedHosts.isEmpty { return 1 }
        return findings.isEmpty ? 0 : 2
    }
}

/// The drift of one region.
public struct RegionDrift: Sendable, Codable, Equatable {
    public var region: String
    public var hosts: [HostExamination]
    public var findings: [DriftFinding]
    public var pending: [PendingChange]

    public init(region: String, hosts: [HostExamination], findings: [DriftFinding], pending: [PendingChange]) {
        self.region = region
        self.hosts = hosts.sorted { $0.host < $1.host }
        self.findings = findings.sorted()
        self.pending = pending.sorted { ($0.host, $0.subject) < ($1.host, $1.subject) }
    }
}

/// Whether a host could be examined, and why not.
public struct HostExamination: Sendable, Codable, Equatable {
    public var region: String
    public var host: String
    public var address: String
    public var examined: Bool
    public var reason: String?

    public init(region: String, host: String, address: String, examined: Bool, reason: String? = nil) {
        self.region = region
        self.host = host
        self.address = address
        self.examined = examined
        self.reason = reason
    }
}

/// A change the fleet repository asks for that has not been applied yet.
public struct PendingChange: Sendable, Codable, Equatable {
    public var region: String
    public var host: String
    public var subject: String
    public var description: String

    public init(region: String, host: String, subject: String, description: String) {
        self.region = region
        self.host = host
        self.subject = subject
        self.description = description
    }
}

extension DriftReport {
    /// Findings grouped by region and host, each with its one-line fix, then
    /// the pending changes and a summary line.
    public func renderText() -> String {
        var out = ""
        for region in regions where !region.findings.isEmpty || region.hosts.contains(where: { !$0.examined }) {
            out += "region \(region.region)\n"
            let hosts = Set(region.findings.map(\.host)).union(region.hosts.filter { !$0.examined }.map(\.host)).sorted()
            for host in hosts {
                let address = region.hosts.first { $0.host == host }?.address ?? ""
                out += "  host \(host)\(address.isEmpty ? "" : " (\(address))")\n"
                for finding in region.findings where finding.host == host {
                    out += "    \(finding.kind.rawValue)  \(finding.subject): \(finding.detail)\n"
                    out += "      fix: \(finding.kind.fix)\n"
                }
            }
        }
        let pending = regions.flatMap(\.pending)
        if !pending.isEmpty {
            out += "pending (in the fleet repository, not applied yet; not drift):\n"
            for change in pending { out += "  \(change.region)/\(change.host)  \(change.subject): \(change.description)\n" }
        }
        let findings = self.findings
        let hosts = regions.reduce(0) { $0 + $1.hosts.count }
        let unexamined = unexaminedHosts.count
        if findings.isEmpty && unexamined == 0 {
            out += "No drift: \(hosts) hosts in \(regions.count) regions match what was last applied"
        } else {
            let drifted = Set(findings.map { "\($0.region)/\($0.host)" }).count
            out += "Drift: \(findings.count) finding\(findings.count == 1 ? "" : "s") on \(drifted) host\(drifted == 1 ? "" : "s") of \(hosts)"
            if unexamined > 0 { out += "; \(unexamined) host\(unexamined == 1 ? "" : "s") could not be examined" }
        }
        if !pending.isEmpty { out += "; \(pending.count) pending change\(pending.count == 1 ? "" : "s")" }
        return out + ".\n"
    }

    /// The Prometheus text exposition format, for node_exporter's textfile
    /// collector. Every region × kind pair is written, zeros included, so a
    /// cleared finding resets its series instead of leaving it stale.
    public func renderPrometheus() -> String {
        var out = ""
        out += "# HELP meridian_drift_findings Drift findings in the last drift run, by region and kind.\n"
        out += "# TYPE meridian_drift_findings gauge\n"
        for region in regions {
            for kind in DriftKind.allCases {
                let count = region.findings.count { $0.kind == kind }
                out += "meridian_drift_findings{region=\"\(Self.escapeLabel(region.region))\",kind=\"\(kind.rawValue)\"} \(count)\n"
            }
        }
        out += "# HELP meridian_drift_hosts_unreachable Hosts the last drift run could not examine, by region.\n"
        out += "# TYPE meridian_drift_hosts_unreachable gauge\n"
        for region in regions {
            out += "meridian_drift_hosts_unreachable{region=\"\(Self.escapeLabel(region.region))\"} \(region.hosts.count { !$0.examined })\n"
        }
        out += "# HELP meridian_drift_pending_changes Changes in the fleet repository not applied yet, by region.\n"
        out += "# TYPE meridian_drift_pending_changes gauge\n"
        for region in regions {
            out += "meridian_drift_pending_changes{region=\"\(Self.escapeLabel(region.region))\"} \(region.pending.count)\n"
        }
        out += "# HELP meridian_drift_last_run_timestamp_seconds When the last drift run started, in Unix seconds.\n"
        out += "# TYPE meridian_drift_last_run_timestamp_seconds gauge\n"
        out += "meridian_drift_last_run_timestamp_seconds \(Self.number(startedAt.timeIntervalSince1970))\n"
        out += "# HELP meridian_drift_last_run_duration_seconds How long the last drift run took.\n"
        out += "# TYPE meridian_drift_last_run_duration_seconds gauge\n"
        out += "meridian_drift_last_run_duration_seconds \(Self.number(durationSeconds))\n"
        return out
    }

    static func escapeLabel(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ value: Double) -> String {
        String(format: "%.3f", value)
    }
}
