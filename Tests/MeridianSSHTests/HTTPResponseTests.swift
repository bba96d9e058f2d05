import Foundation
import MeridianSSH
import Testing

@Suite struct HTTPResponseTests {
    @Test func contentLength() throws {
        let raw = Data("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello, and more".utf8)
        let response = try HTTPResponse.parse(raw).get()
        #expect(response.status == 200)
        #expect(response.reason == "OK")
        #expect(response.header("content-type") == "text/plain")
        #expect(response.bodyText == "hello")
    }

    @Test func chunked() throws {
        let raw = Data("HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5;x=y\r\nready\r\n0\r\n\r\n".utf8)
        let response = try HTTPResponse.parse(raw).get()
        #expect(response.status == 503)
        #expect(response.reason == "Service Unavailable")
        #expect(response.bodyText == "not ready")
    }

    @Test func untilClose() throws {
        let response = try HTTPResponse.parse(Data("HTTP/1.0 404 Not Found\r\n\r\nnope".utf8)).get()
        #expect(response.status == 404)
        #expect(response.bodyText == "nope")
    }

    @Test func malformed() {
        #expect(throws: HTTPParseError.self) { try HTTPResponse.parse(Data("garbage".utf8)).get() }
        #expect(throws: HTTPParseError.self) { try HTTPResponse.parse(Data("SSH-2.0-x\r\n\r\n".utf8)).get() }
        #expect(throws: HTTPParseError.self) { try HTTPResponse.parse(Data("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort".utf8)).get() }
        // A HEAD answer announces a length it does not send.
        #expect((try? HTTPResponse.parse(Data("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n".utf8), bodyless: true).get())?.status == 200)
    }
}
