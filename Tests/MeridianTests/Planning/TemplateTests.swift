import Foundation
import MeridianModel
import Testing
@testable import MeridianPlanning

/// Resolves references from a fixed map, to stand for apply-time resolution.
private struct FixedSecrets: SecretResolver {
    var values: [String: String]
    struct Missing: Error, CustomStringConvertible { var description: String }
    func resolve(_ reference: SecretReference) throws -> String {
        guard let value = values[reference.description] else { throw Missing(description: "not set") }
        return value
    }
}

@Suite struct TemplateTests {
    let variables: [String: TemplateValue] = [
        "region.name": .text("eu-west"),
        "vars.max_tokens": .text("4096"),
        "vars.greeting": .text("say \"hi\"\n"),
        "vars.db_password": .secret(SecretReference(source: .environment, name: "DB_PASSWORD")),
    ]

    func render(_ source: String, secrets: any SecretResolver = MaskingSecretResolver()) -> Result<RenderedText, TemplateFailure> {
        Template(source).render(variables, secrets: secrets)
    }

    @Test func substitutesDottedNames() throws {
        let rendered = try render("region: {{ region.name }}\nmax: {{vars.max_tokens}}\n").get()
        #expect(rendered.text == "region: eu-west\nmax: 4096\n")
        #expect(!rendered.isSensitive)
    }

    @Test func defaultFilterAppliesOnlyWhenMissing() throws {
        let rendered = try render(#"a={{ vars.port | default "8080" }} b={{ vars.max_tokens | default "1" }}"#).get()
        #expect(rendered.text == "a=8080 b=4096")
    }

    @Test func jsonFilterQuotes() throws {
        let rendered = try render(#"{"greeting": {{ vars.greeting | json }}, "p": {{ vars.nope | default "x\"y" | json }}}"#).get()
        #expect(rendered.text == #"{"greeting": "say \"hi\"\n", "p": "x\"y"}"#)
    }

    @Test func tagsMaySpanLines() throws {
        let rendered = try render("a={{\n  vars.nope\n  | default \"x\"\n}}!").get()
        #expect(rendered.text == "a=x!")
        guard case .failure(let failure) = render("line one\n{{\n  vars.nope }} {{ vars.other\n}}") else { Issue.record("expected problems"); return }
        #expect(failure.problems.map { "\($0.line):\($0.column)" } == ["2:1", "3:16"])
    }

    @Test func literalBracesEscape() throws {
        let rendered = try render(#"{{ "{{" }} not a tag }} {{ "}}" }}"#).get()
        #expect(rendered.text == "{{ not a tag }} }}")
    }

    @Test func reportsEveryProblemWithLineAndColumn() {
        let source = "a: {{ vars.missing }}\nb: {{ region.name | upper }}\n  c: {{ vars.other }}\nd: {{ vars.open"
        guard case .failure(let failure) = render(source) else {
            Issue.record("expected problems")
            return
        }
        #expect(failure.problems.map(\.description) == [
            "1:4: missing variable `vars.missing`: define it in the region's variables or add `| default \"…\"`",
            "2:21: unknown filter `upper`: expected `default \"text\"` or `json`",
            "3:6: missing variable `vars.other`: define it in the region's variables or add `| default \"…\"`",
            "4:4: unterminated tag: `{{` has no closing `}}` (write {{ \"{{\" }} for literal braces)",
        ])
    }

    @Test func malformedTags() {
        for source in ["{{ }}", "{{ 9lives }}", "{{ a b }}", #"{{ a | default }}"#, #"{{ "\q" }}"#, "{{ a. }}"] {
            guard case .failure(let failure) = render(source) else {
                Issue.record("expected a problem for \(source)")
                continue
            }
            #expect(failure.problems.count == 1, "\(source)")
            #expect(failure.problems.allSatisfy {
                if case .malformedTag = $0.kind { return true } else { return false }
            }, "\(source)")
        }
    }

    @Test func columnsCountCharactersNotBytes() {
        guard case .failure(let failure) = render("héllo ✓ {{ x }}") else {
            Issue.record("expected a problem")
            return
        }
        #expect(failure.problems.first?.column == 9)
    }

    @Test func secretsAreMaskedAtPlanTime() throws {
        let rendered = try render("password={{ vars.db_password }}\nname={{ region.name }}\n").get()
        #expect(rendered.isSensitive)
        #expect(rendered.secretReferences == [SecretReference(source: .environment, name: "DB_PASSWORD")])
        #expect(rendered.text == "password=⟪sensitive:env:DB_PASSWORD⟫\nname=eu-west\n")
    }

    @Test func secretsResolveAtApplyTime() throws {
        let secrets = FixedSecrets(values: ["env:DB_PASSWORD": "hunter2"])
        let rendered = try render("password={{ vars.db_password | json }}", secrets: secrets).get()
        #expect(rendered.text == #"password="hunter2""#)
        #expect(rendered.isSensitive)
    }

    @Test func unavailableSecretIsAProblemWithItsPlace() {
        guard case .failure(let failure) = render("\n  x={{ vars.db_password }}", secrets: FixedSecrets(values: [:])) else {
            Issue.record("expected a problem")
            return
        }
        #expect(failure.problems.map(\.description) == ["2:5: secret env:DB_PASSWORD is unavailable: not set"])
    }

    @Test func secretReferenceParsing() {
        #expect(TemplateValue(variable: "env:API_KEY") == .secret(SecretReference(source: .environment, name: "API_KEY")))
        #expect(TemplateValue(variable: "file:secrets/db") == .secret(SecretReference(source: .file, name: "secrets/db")))
        #expect(TemplateValue(variable: "env:") == .text("env:"))
        #expect(TemplateValue(variable: "env:has space") == .text("env:has space"))
        #expect(TemplateValue(variable: "envelope") == .text("envelope"))
        #expect(TemplateValue(variable: "file:") == .text("file:"))
    }

    @Test func localResolverReadsEnvironmentAndFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-secret-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data("s3cret\n".utf8).write(to: folder.appendingPathComponent("db"))
        let resolver = LocalSecretResolver(environment: ["TOKEN": "abc"], baseDirectory: folder)
        #expect(try resolver.resolve(SecretReference(source: .environment, name: "TOKEN")) == "abc")
        #expect(try resolver.resolve(SecretReference(source: .file, name: "db")) == "s3cret")
        #expect(throws: LocalSecretResolver.Unavailable.self) {
            try resolver.resolve(SecretReference(source: .environment, name: "NOPE"))
        }
        #expect(throws: LocalSecretResolver.Unavailable.self) {
            try resolver.resolve(SecretReference(source: .file, name: "missing"))
        }
        guard case .failure(let failure) = Template("k={{ vars.k }}").render(["vars.k": .secret(SecretReference(source: .environment, name: "NOPE"))], secrets: resolver) else {
            Issue.record("expected a problem")
            return
        }
        #expect(failure.description == "1:3: secret env:NOPE is unavailable: the environment variable NOPE is not set; export it before running apply")
    }

    @Test func variableNamesAreListed() {
        #expect(Template("{{ b }} {{ a.x | default \"1\" }} {{ b }} {{ \"lit\" }}").variableNames == ["a.x", "b"])
    }

    @Test func renderingIntoAManagedFileMarksSecretsAndForcesMode() throws {
        let template = Template("key={{ vars.db_password }}\n")
        let file = try ManagedFile.rendering(template, templatePath: "templates/db.env", variables: variables,
                                             path: "config/db/db.env", mode: 0o644, source: "templates/db.env").get()
        #expect(file.mode == 0o600)
        #expect(file.content.isSensitive)
        if case .sensitive(let masked, let references) = file.content {
            #expect(!masked.contains("hunter2"))
            #expect(references.map(\.description) == ["env:DB_PASSWORD"])
        }
        guard case .failure(let failure) = ManagedFile.rendering(Template("{{ nope }}"), templatePath: "templates/x.conf", variables: [:], path: "config/x", source: "x") else {
            Issue.record("expected failure")
            return
        }
        #expect(failure.messages == ["templates/x.conf:1:1: missing variable `nope`: define it in the region's variables or add `| default \"…\"`"])
    }
}
