import Foundation

/// How a text plan looks. The caller decides `color`: on for a terminal
/// unless NO_COLOR is set, off otherwise.
public struct PlanTextStyle: Sendable, Equatable {
    public var color: Bool

    public init(color: Bool) { self.color = color }

    public static let plain = PlanTextStyle(color: false)
}

/// A region a plan does not cover because some of its hosts could not be
/// observed, with one sentence per such host.
public struct LeftOutRegion: Sendable, Equatable {
    public var name: String
    public var reasons: [String]

    public init(name: String, reasons: [String]) {
        self.name = name
        self.reasons = reasons
    }
}

extension Plan {
    /// The human-readable plan: per region, per host, the actions with their
    /// glyphs and indented diffs, then one summary line. Regions in
    /// `leftOut` are named with why, and the summary never says the fleet
    /// matches when some of it was not compared.
    public func renderText(style: PlanTextStyle = .plain, leftOut: [LeftOutRegion] = []) -> String {
        let paint = Paint(enabled: style.color)
        var out = ""
        if summary.hasChanges {
            out += "Symbols: \(paint.glyph(.createFile)) create  \(paint.glyph(.updateFile)) update  \(paint.glyph(.deleteFile)) delete  "
                + "\(paint.glyph(.upgradeComponent)) upgrade  \(paint.glyph(.restartComponent)) restart\n\n"
        }
        for region in regions {
            guard region.hasChanges || region.hasWarnings else {
                out += paint.bold("Region \(region.name)") + ": no changes (\(count(region.hosts.count, "host")))\n\n"
                continue
            }
            out += paint.bold("Region \(region.name)") + "\n"
            for host in region.hosts {
                let title = "host \(host.host) (\(host.address))"
                let warnings = host.warnings.map { "    " + paint.wrap("! \($0)", "33") + "\n" }.joined()
                guard host.hasChanges else {
                    out += "  \(title): no changes\n" + warnings
                    continue
                }
                out += "  \(paint.bold(title))\n" + warnings
                for action in host.actions where action.kind != .noOp {
                    out += "    " + paint.glyph(action.kind) + " " + Self.headline(action) + "\n"
                    for reason in action.reasons {
                        out += "        # \(reason)\n"
                    }
                    switch action.diff {
                    case .none, .identical?:
                        break
                    case .binary(let oldBytes, let newBytes)?:
                        out += "        binary content: " + Self.sizes(oldBytes, action.beforeSHA256, newBytes, action.afterSHA256) + "\n"
                    case .large(let oldBytes, let newBytes)?:
                        out += "        not diffed (over \(UnifiedDiff.lineDiffLimit / 1024) KiB): "
                            + Self.sizes(oldBytes, action.beforeSHA256, newBytes, action.afterSHA256) + "\n"
                    case .text(let unified)?:
                        for line in unified.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
                            out += "        " + paint.diffLine(line) + "\n"
                        }
                    }
                }
            }
            out += "\n"
        }
        if let residency { out += residency.renderText() + "\n" }
        for region in leftOut {
            out += paint.bold("Region \(region.name)") + ": " + paint.wrap("left out, not compared", "33") + "\n"
            for reason in region.reasons { out += "  ! \(reason)\n" }
            out += "\n"
        }
        guard !leftOut.isEmpty else { return out + Self.summaryLine(summary) + "\n" }
        let checked = regions.map(\.name)
        out += "Checked: \(checked.isEmpty ? "no region" : checked.joined(separator: ", ")). Left out: \(leftOut.map(\.name).joined(separator: ", ")) (hosts could not be observed).\n"
        if summary.hasChanges { return out + Self.summaryLine(summary) + "\n" }
        return out + "No changes in the checked regions; \(count(leftOut.count, "region")) left out \(leftOut.count == 1 ? "was" : "were") not compared.\n"
    }

    /// `120 bytes (sha256 9f2c4e1a0b7d) → 2000000 bytes (sha256 4be1…)`; a side absent as `absent`.
    static func sizes(_ oldBytes: Int?, _ oldHash: String?, _ newBytes: Int?, _ newHash: String?) -> String {
        func side(_ bytes: Int?, _ hash: String?) -> String {
            guard let bytes else { return "absent" }
            return "\(bytes) bytes" + (hash.map { " (sha256 \($0.prefix(12)))" } ?? "")
        }
        return side(oldBytes, oldHash) + " → " + side(newBytes, newHash)
    }

    static func headline(_ action: PlanAction) -> String {
        let sensitive = action.sensitive ? " (sensitive)" : ""
        switch action.kind {
        case .createFile:
            return "\(action.subject)\(sensitive) mode \(action.modeAfter ?? FileMode(0o644))"
        case .updateFile, .deleteFile:
            return "\(action.subject)\(sensitive)"
        case .installRelease:
            return "release \(action.component ?? "?") \(action.toVersion ?? "?") from \(action.artifact ?? "?")"
        case .upgradeComponent:
            let strategy = action.strategy?.rawValue ?? "recreate"
            return "\(action.subject) \(action.fromVersion ?? "(none)") → \(action.toVersion ?? "?") (\(strategy), slot \(action.slot?.rawValue ?? "?"), port \(action.port.map(String.init) ?? "?"))"
        case .restartComponent:
            return "restart \(action.subject) \(action.toVersion ?? "") (slot \(action.slot?.rawValue ?? "?"), port \(action.port.map(String.init) ?? "?"))"
        case .noOp:
            return action.subject
        }
    }

    /// `Plan: 3 to create, … across 2 regions (5 hosts unchanged).`, or the no-changes sentence.
    public static func summaryLine(_ summary: PlanSummary) -> String {
        guard summary.hasChanges else { return "No changes. The fleet matches the configuration." }
        return "Plan: \(summary.create) to create, \(summary.update) to update, \(summary.delete) to delete, "
            + "\(count(summary.upgrade, "upgrade")), \(count(summary.restart, "restart")) "
            + "across \(count(summary.regionsChanged, "region")) (\(count(summary.hostsUnchanged, "host")) unchanged)."
    }

    /// The JSON document for CI and `--out`: the plan's fields plus
    /// `plan_hash` and `summary`; `Plan.decode` reads it back. Schema in docs/plan-format.md.
    public func renderJSON() -> Data {
        struct Document: Encodable {
            var plan: Plan
            var planHash: String
            var summary: PlanSummary
            enum CodingKeys: String, CodingKey {
                case formatVersion = "format_version", planHash = "plan_hash", summary, basis, regions, residency
            }
            func encode(to encoder: Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(plan.formatVersion, forKey: .formatVersion)
                try container.encode(planHash, forKey: .planHash)
                try container.encode(summary, forKey: .summary)
                try container.encode(plan.basis, forKey: .basis)
                try container.encode(plan.regions, forKey: .regions)
                try container.encodeIfPresent(plan.residency, forKey: .residency)
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        // Only strings, integers, booleans and containers of them: encoding cannot fail.
        let data = (try? encoder.encode(Document(plan: self, planHash: hash, summary: summary))) ?? Data()
        return data + Data("\n".utf8)
    }
}

private func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

/// ANSI colours, or nothing when disabled.
private struct Paint {
    var enabled: Bool

    func wrap(_ text: String, _ code: String) -> String {
        enabled ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }

    func bold(_ text: String) -> String { wrap(text, "1") }

    func glyph(_ kind: PlanActionKind) -> String {
        switch kind {
        case .createFile, .installRelease: return wrap(kind.glyph, "32")
        case .updateFile: return wrap(kind.glyph, "33")
        case .deleteFile: return wrap(kind.glyph, "31")
        case .upgradeComponent: return wrap(kind.glyph, "36")
        case .restartComponent: return wrap(kind.glyph, "35")
        case .noOp: return kind.glyph
        }
    }

    func diffLine(_ line: Substring) -> String {
        let text = String(line)
        if text.hasPrefix("+++") || text.hasPrefix("---") { return bold(text) }
        if text.hasPrefix("@@") { return wrap(text, "36") }
        if text.hasPrefix("+") { return wrap(text, "32") }
        if text.hasPrefix("-") { return wrap(text, "31") }
        return text
    }
}
