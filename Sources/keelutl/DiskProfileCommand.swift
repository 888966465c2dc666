import ArgumentParser
import KeelDiskProfiler
import KeelIO

/// `keelutl disk-profile`: what etcd's durability costs on this disk.
struct DiskProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk-profile",
        abstract: "Measure fdatasync latency for WAL-like appends and backend-like commits, with etcd's verdict.",
        discussion: """
        WAL-like: 2,300-byte writes with an fdatasync after each, 22 MiB in all (etcd's fio recipe).
        Backend-like: 16 scattered 4 KiB page writes, fdatasync, a meta page, fdatasync.
        Writes only inside --dir and removes its files. With --json the last line is the WAL result.
        """
    )

    @Option(help: "Directory on the disk to measure.")
    var dir: String
    @Option(help: "Total bytes of WAL-like appends.")
    var walBytes = 22 * 1024 * 1024
    @Option(help: "Backend-like commits to time.")
    var commits = 200
    @Flag(help: "JSON lines; the last one is {\"iops\",\"p50_us\",\"p90_us\",\"p99_us\",\"p999_us\",\"max_us\"} for the WAL.")
    var json = false

    func run() throws {
        var config = DiskProfiler.Config(directory: dir)
        config.walTotalBytes = walBytes
        config.commits = commits
        let profiler = DiskProfiler(config: config)
        let backend: DiskProfiler.Measurement
        let wal: DiskProfiler.Measurement
        do {
            backend = try profiler.profileBackend()
            wal = try profiler.profileWAL()
        } catch {
            printError("keelutl disk-profile: \(error)")
            throw ExitCode(1)
        }
        if json {
            print(line(backend, kind: "backend-commit"))
            print(line(wal, kind: nil))
            return
        }
        for m in [wal, backend] {
            let title = m.name == "wal" ? "WAL-like appends (\(config.walWriteBytes) B + fdatasync, \(config.walTotalBytes >> 20) MiB)"
                                        : "Backend-like commits (\(config.commitPages) pages + fdatasync + meta + fdatasync)"
            print(title)
            print("  \(m.operations) operations in \(String(format2: m.seconds)) s: \(Int(m.iops)) per second")
            print("  latency us: p50 \(Int(m.microseconds(0.5)))  p90 \(Int(m.microseconds(0.9)))  p99 \(Int(m.microseconds(0.99)))  p99.9 \(Int(m.microseconds(0.999)))  max \(Int(m.maxMicroseconds))")
        }
        print("etcd_disk_wal_fsync_duration_seconds (cumulative):")
        for bucket in wal.etcdBuckets() { print("  le=\(bucket.le): \(bucket.count)") }
        print("verdict: " + DiskProfiler.verdict(wal))
    }

    private func line(_ m: DiskProfiler.Measurement, kind: String?) -> String {
        var json = JSONLine()
        if let kind { json.add("kind", kind) }
        for (name, value) in [("iops", m.iops), ("p50_us", m.microseconds(0.5)), ("p90_us", m.microseconds(0.9)),
                              ("p99_us", m.microseconds(0.99)), ("p999_us", m.microseconds(0.999)), ("max_us", m.maxMicroseconds)] {
            json.add(name, value, decimals: 2)
        }
        return json.description
    }
}
