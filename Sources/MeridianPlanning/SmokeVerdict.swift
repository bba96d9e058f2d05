import MeridianModel

extension SmokeProbe {
    /// Why an answer fails this probe, as a sentence, or nil when it passes:
    /// the status must be `expectStatus` and the body must hold `expectBodyContains`.
    public func failure(status: Int, body: String) -> String? {
        if status != expectStatus {
            return "answered HTTP \(status), expected \(expectStatus)"
        }
        if let wanted = expectBodyContains, !body.contains(wanted) {
            let shown = body.count > 200 ? String(body.prefix(200)) + "…" : body
            return "the body does not contain \(wanted): \(shown.debugDescription)"
        }
        return nil
    }
}
