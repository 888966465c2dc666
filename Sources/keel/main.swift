import Foundation
import KeelServer

// `keel`: starts a member with etcd's flags, or runs a client command (`keel bench`).
let arguments = Array(CommandLine.arguments.dropFirst())

if arguments.first == "bench" {
    exit(await Bench.main(Array(arguments.dropFirst())))
}
if arguments.contains("--help") || arguments.contains("-h") {
    print(ServerConfig.help)
    exit(0)
}
if arguments.contains("--version") {
    print("keel (etcd API \(KeelServer.etcdAPIVersion))")
    exit(0)
}

let config: ServerConfig
do {
    config = try ServerConfig.parse(arguments: arguments, environment: ProcessInfo.processInfo.environment)
} catch {
    FileHandle.standardError.write(Data("keel: \(error)\n".utf8))
    exit(2)
}
let log = ServerLog(level: config.logLevel)
let server: KeelServer
do {
    server = try await KeelServer.start(config, log: log)
} catch {
    log.error("cannot start", ["error": "\(error)"])
    exit(1)
}

// SIGINT/SIGTERM: stop gracefully (in-flight requests answered, WAL and backend closed).
let stopRequested = AsyncStream<Int32>.makeStream()
signal(SIGINT, SIG_IGN)
signal(SIGTERM, SIG_IGN)
var sources: [any DispatchSourceSignal] = []
for sig in [SIGINT, SIGTERM] {
    let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    s.setEventHandler { stopRequested.continuation.yield(sig) }
    s.resume()
    sources.append(s)
}
// A member whose durable state failed stops serving: exit non-zero so a supervisor restarts it.
let watchdog = Task {
    while !Task.isCancelled {
        try? await Task.sleep(nanoseconds: 200_000_000)
        if server.fatalError != nil { stopRequested.continuation.yield(0) ; return }
    }
}
var signalled: Int32 = 0
for await sig in stopRequested.stream {
    signalled = sig
    break
}
watchdog.cancel()
if signalled != 0 { log.info("received signal; shutting down", ["signal": signalled == SIGINT ? "interrupt" : "terminated"]) }
await server.stop()
exit(server.fatalError == nil ? 0 : 1)
