import MeridianLoading
import MeridianModel
import Testing

/// meridian.yaml's `state:`: a file inside the fleet or a PostgreSQL URL
/// whose password is only ever a secret reference.
@Suite struct StateSettingTests {
    func settings(_ state: String) -> String { MinimalFleet.settings + "\n" + state + "\n" }

    @Test func aURLWithASecretPasswordIsAccepted() throws {
        let loaded = MinimalFleet.load(["meridian.yaml": settings("state:\n  url: postgresql://meridian@db.internal:5432/meridian\n  password: env:MERIDIAN_STATE_PASSWORD")])
        #expect(loaded.diagnostics.sorted.map(\.description) == [])
        let state = try #require(loaded.fleet?.settings.state)
        #expect(state == StateSetting(location: "postgresql://meridian@db.internal:5432/meridian", password: SecretReference(source: .environment, name: "MERIDIAN_STATE_PASSWORD")))
        #expect(MinimalFleet.load(["meridian.yaml": settings("state: .meridian/team.db")]).fleet?.settings.state == StateSetting(location: ".meridian/team.db"))
    }

    @Test func aPasswordInClearIsRefusedWithoutRepeatingIt() {
        let messages = MinimalFleet.diagnostics(["meridian.yaml": settings("state: postgresql://meridian:hunter2@db.internal/meridian")])
        #expect(messages.count == 1)
        #expect(messages.first?.contains("state: the URL holds a password in clear (postgresql://meridian:***@db.internal:5432/meridian)") == true, "\(messages)")
        #expect(messages.allSatisfy { !$0.contains("hunter2") })
        let literal = MinimalFleet.diagnostics(["meridian.yaml": settings("state:\n  url: postgresql://meridian@db/x\n  password: hunter2")])
        #expect(literal.count == 1 && literal[0].contains("state.password: expected a secret reference"), "\(literal)")
        #expect(literal.allSatisfy { !$0.contains("hunter2") })
    }

    @Test func otherMistakesAreNamed() {
        #expect(MinimalFleet.diagnostics(["meridian.yaml": settings("state: /var/lib/meridian/state.db")]).first?.contains("state: a SQLite state file must be a relative path inside the fleet") == true)
        #expect(MinimalFleet.diagnostics(["meridian.yaml": settings("state: postgresql://db/x?pool=2")]).first?.contains("state: ?pool is not a parameter meridian knows") == true)
        #expect(MinimalFleet.diagnostics(["meridian.yaml": settings("state:\n  url: .meridian/state.db\n  password: env:X")]).first?.contains("state.url: a password only applies to a postgresql:// URL") == true)
    }
}
