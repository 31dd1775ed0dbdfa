// caregate-echo-upstream: the upstream that gateway tests and load runs put behind Caregate.
// It answers every request with what reached it, so a test can see exactly what the
// gateway forwarded:
//   {"method","path","query","headers":[[name, value], …],"bodyBytes","bodyText"}
// Two request headers steer it (they travel through the gateway like any other header):
//   X-Echo-Status: <code>    answer with that status (the upstream's own errors)
//   X-Echo-Delay-Ms: <ms>    wait that long before answering (gateway timeouts)
// Usage: caregate-echo-upstream [--host 127.0.0.1] [--port 0]
// It prints "listening on <port>" once it accepts connections.
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

var host = "127.0.0.1"
var port = 0
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--host": host = arguments.next() ?? host
    case "--port": port = arguments.next().flatMap(Int.init) ?? port
    default:
        FileHandle.standardError.write(Data("usage: caregate-echo-upstream [--host H] [--port P]\n".utf8))
        exit(2)
    }
}

/// Escapes a string for a JSON string literal.
func quoted(_ text: some StringProtocol) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

struct Echo: HTTPResponder {
    typealias Context = BasicRequestContext

    func respond(to request: Request, context: Context) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 64 * 1024 * 1024)
        if let delay = request.headers[HTTPField.Name("X-Echo-Delay-Ms")!].flatMap(Int.init), delay > 0 {
            try await Task.sleep(for: .milliseconds(min(delay, 60_000)))
        }
        let status = request.headers[HTTPField.Name("X-Echo-Status")!].flatMap(Int.init).map { HTTPResponse.Status(code: $0) } ?? .ok
        var headers: [String] = []
        for field in request.headers {
            headers.append("[\(quoted(field.name.canonicalName)),\(quoted(field.value))]")
        }
        let text = String(decoding: body.readableBytesView.prefix(4096), as: UTF8.self)
        let json = """
            {"method":\(quoted(request.method.rawValue)),"path":\(quoted(request.uri.path)),"query":\(quoted(request.uri.query ?? "")),\
            "headers":[\(headers.joined(separator: ","))],"bodyBytes":\(body.readableBytes),"bodyText":\(quoted(text))}
            """
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
    }
}

var logger = Logger(label: "echo-upstream")
logger.logLevel = .warning
let app = Application(
    responder: Echo(),
    configuration: .init(address: .hostname(host, port: port), serverName: "echo-upstream"),
    onServerRunning: { channel in
        FileHandle.standardOutput.write(Data("listening on \(channel.localAddress?.port ?? 0)\n".utf8))
    },
    logger: logger)
try await app.runService()
