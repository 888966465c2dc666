import ArgumentParser

/// `keelutl`: Keel's offline tools. Never links gRPC or NIO.
@main
struct Keelutl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keelutl",
        abstract: "Offline tools for Keel and bbolt files: benchmarks and consistency checks.",
        subcommands: [BenchCommand.self, CheckCommand.self, CrossCheckCommand.self, DiskProfileCommand.self,
                      InfoCommand.self, BucketsCommand.self, KeysCommand.self, GetCommand.self,
                      SnapshotCommand.self, EtcdCommand.self, WALCommand.self,
                      PagesCommand.self, PageCommand.self, PageItemCommand.self, DumpCommand.self, StatsCommand.self, CompactCommand.self,
                      SnapCommand.self, LMDBCommand.self, RaftSimCommand.self]
    )
}
