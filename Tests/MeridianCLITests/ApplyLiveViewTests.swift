import Foundation
import Testing
import MeridianEngine
@testable import MeridianCLI

@Suite struct ApplyLiveViewTests {
    final class Screen: @unchecked Sendable {
        let lock = NSLock()
        var writes: [String] = []
        func append(_ text: String) { lock.lock(); writes.append(text); lock.unlock() }
    }

    @Test func oneLinePerRegionRedrawnInPlace() {
        let screen = Screen()
        let view = ApplyLiveView(regions: [("eu-west", ["gw", "inf-1"]), ("us-east", ["us-1"])], write: { screen.append($0) })
        view.handle(.observed(region: "eu-west", host: "gw"))
        view.handle(.stepStarted(region: "eu-west", host: "gw", step: "write config/a.yaml"))
        view.handle(.hostFinished(region: "us-east", host: "us-1", error: nil))
        view.handle(.stepFinished(region: "eu-west", host: "inf-1", step: "start inference", error: "health check failed"))
        view.handle(.hostFinished(region: "eu-west", host: "inf-1", error: "health check failed"))
        #expect(view.frame() == [
            "eu-west  1/2 hosts, 1 failed  gw: write config/a.yaml",
            "us-east  1/1 hosts",
        ])
        // The first frame is drawn in place; every later one first moves the cursor up over the last.
        #expect(!screen.writes[0].contains("\u{1B}[2A"))
        #expect(screen.writes.dropFirst().allSatisfy { $0.hasPrefix("\u{1B}[2A") })
        #expect(screen.writes.last!.components(separatedBy: "\n").count == 3)
    }
}
