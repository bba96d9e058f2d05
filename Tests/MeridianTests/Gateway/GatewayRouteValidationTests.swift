import Foundation
import Testing
@testable import MeridianLoading
@testable import MeridianModel

@Suite struct GatewayRouteValidationTests {
    static func settings(inference: String, extra: String = "") -> String {
        MinimalFleet.settings.replacingOccurrences(of: "    strategy: canary\n", with: "    strategy: canary\n    route: \(inference)\n\(extra)")
    }

    @Test func aRouteIsRead() {
        let loaded = MinimalFleet.load(["meridian.yaml": Self.settings(inference: "/v1/")])
        #expect(loaded.diagnostics.sorted.map(\.description) == [])
        #expect(loaded.fleet?.component(named: "inference")?.route == "/v1/")
    }

    @Test func badRoutesAreRefusedWithTheirPlace() {
        for bad in ["v1/", "/v1", "/", "//", "/a b/", "/a;b/", "/$x/", "/../", "/a//b/", "/.meridian/", "/.meridian/x/"] {
            let diagnostics = MinimalFleet.diagnostics(["meridian.yaml": Self.settings(inference: "\"\(bad)\"")])
            #expect(diagnostics.count == 1, "\(bad): \(diagnostics)")
            #expect(diagnostics.first?.hasPrefix("meridian.yaml:8:12: components.inference.route: ") == true, "\(bad): \(diagnostics)")
        }
        #expect(MinimalFleet.diagnostics(["meridian.yaml": Self.settings(inference: "/v1/")]) == [])
        #expect(MinimalFleet.diagnostics(["meridian.yaml": Self.settings(inference: "/api/v1.2/~x_y-z/")]) == [])
    }

    @Test func routesAreUniqueAcrossComponents() {
        let other = """
          search:
            artifact: artifacts/search/{version}
            start: [bin/serve]
            ports: { blue: 8201, green: 8202 }
            route: /v1/

        """
        let settings = Self.settings(inference: "/v1/", extra: other).replacingOccurrences(of: "  inference: 2.0.0", with: "  inference: 2.0.0\n  search: 1.0.0")
        #expect(MinimalFleet.diagnostics(["meridian.yaml": settings]) == [
            "meridian.yaml:13:12: components.search.route: route /v1/ is already the route of inference: give every component its own path prefix",
        ])
    }
}
