import ArgumentParser
import KeelBolt

/// `keelutl check PATH`: bbolt's consistency check.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a bbolt file's consistency: prints OK, or every problem with its page id (exit 1).",
        discussion: "Opens the file read-only (a shared lock: it waits while a writer has the file open)."
    )

    @Argument(help: "The bbolt file.")
    var path: String

    @Option(help: "Seconds to wait for the file lock (0 tries once).")
    var lockTimeout: Double = 5

    func run() throws {
        var options = Options()
        options.readOnly = true
        options.lockTimeout = lockTimeout
        let db: DB
        do {
            db = try DB.open(path: path, options: options)
        } catch {
            printError("keelutl check: \(error)")
            throw ExitCode(2)
        }
        defer { try? db.close() }
        let issues = try db.view { tx throws(BoltError) in tx.check() }
        if issues.isEmpty {
            print("OK")
            return
        }
        for issue in issues { print(issue) }
        print("\(issues.count) errors found")
        throw ExitCode(1)
    }
}

func printError(_ message: String) { writeStandardError(message + "\n") }

/// Writes straight to file descriptor 2 (unbuffered).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(2, raw.baseAddress! + offset, raw.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
