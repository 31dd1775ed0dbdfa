// caregate-echo-upstream: the upstream that gateway tests and load runs put behind Caregate.
// It answers every request with what reached it, so a test can see exactly what the
// gateway forwarded:
//   {"method","authority","path","query","headers":[[name, value], …],"bodyBytes","bodyText"}
// Request headers steer it (they travel through the gateway like any other header):
//   X-Echo-Status: <code>    answer with that status (the upstream's own errors)
//   X-Echo-Delay-Ms: <ms>    wait that long before answering (gateway timeouts)
//   X-Echo-Bytes: <n>        answer n bytes of "x" instead (with X-Echo-Chunked: 1, chunked,
//                            in 64 KiB pieces, X-Echo-Pause-Ms apart; otherwise with a
//                            Content-Length)
//   X-Echo-Page: <n>         answer like a practice-API list endpoint instead: a page of n
//                            patient records, JSON-encoded on every request (load runs use
//                            it as a representative upstream)
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

/// One record of a list page, shaped like the practice API's patients.
struct Patient: Codable {
    var id: Int
    var first_name: String
    var last_name: String
    var date_of_birth: String
    var email: String
    var phone: String
    var address: String
    var city: String
    var state: String
    var zip_code: String
    var chart_id: String
    var active: Bool
}

struct Page: Codable {
    var count: Int
    var next: String?
    var previous: String?
    var results: [Patient]
}

func page(size: Int) throws -> ByteBuffer {
    let names = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John"]
    let results = (0..<size).map { i in
        Patient(
            id: 1000 + i, first_name: names[i % names.count], last_name: names[(i * 3 + 1) % names.count] + "son",
            date_of_birth: "19\(50 + i % 50)-0\(1 + i % 9)-1\(i % 10)", email: "patient\(i)@example.com", phone: "555-01\(10 + i % 90)",
            address: "\(i + 1) Main Street", city: "Springfield", state: "IL", zip_code: "627\(10 + i % 90)", chart_id: "CH\(100_000 + i)", active: i % 7 != 0)
    }
    return ByteBuffer(bytes: try JSONEncoder().encode(Page(count: 10_000, next: "/api/2.0/patients/?page=2", previous: nil, results: results)))
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
        if let count = request.headers[HTTPField.Name("X-Echo-Bytes")!].flatMap(Int.init), (0...256 * 1024 * 1024).contains(count) {
            if request.headers[HTTPField.Name("X-Echo-Chunked")!] == "1" {
                let piece = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)
                let pause = request.headers[HTTPField.Name("X-Echo-Pause-Ms")!].flatMap(Int.init) ?? 0
                let pieces = AsyncStream<ByteBuffer> { continuation in
                    let producer = Task {
                        var left = count
                        while left > 0 {
                            continuation.yield(left >= piece.readableBytes ? piece : piece.getSlice(at: 0, length: left)!)
                            left -= piece.readableBytes
                            if pause > 0, left > 0 { try? await Task.sleep(for: .milliseconds(min(pause, 60_000))) }
                        }
                        continuation.finish()
                    }
                    continuation.onTermination = { _ in producer.cancel() }
                }
                return Response(status: status, headers: [.contentType: "application/octet-stream"], body: ResponseBody(asyncSequence: pieces))
            }
            return Response(
                status: status, headers: [.contentType: "application/octet-stream"],
                body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "x"), count: count)))
        }
        if let size = request.headers[HTTPField.Name("X-Echo-Page")!].flatMap(Int.init), (1...1000).contains(size) {
            return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: try page(size: size)))
        }
        var headers: [String] = []
        for field in request.headers {
            headers.append("[\(quoted(field.name.canonicalName)),\(quoted(field.value))]")
        }
        let text = String(decoding: body.readableBytesView.prefix(4096), as: UTF8.self)
        let json = """
            {"method":\(quoted(request.method.rawValue)),"authority":\(quoted(request.head.authority ?? "")),"path":\(quoted(request.uri.path)),"query":\(quoted(request.uri.query ?? "")),\
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
