import KeelBackend
import KeelBolt
import KeelIO
import KeelLMDB

/// The engines `keelutl bench --backend` knows.
public enum BenchBackendKind: String, CaseIterable, Sendable {
    case bolt
    case lmdb

    /// Where this engine keeps its data for a bench whose base path is `base`.
    public func dataPath(base: String) -> String {
        switch self {
        case .bolt: return base
        case .lmdb: return base + ".lmdb"
        }
    }

    /// Opens the engine fresh (removing what a previous run left) with the bench's settings.
    public func open(base: String, config: BenchConfig) throws -> any Backend {
        let fs = POSIXFileSystem()
        let path = dataPath(base: base)
        switch self {
        case .bolt:
            if fs.exists(path) { try fs.remove(path) }
            var options = Options()
            options.noSync = config.noSync
            options.pageSize = config.pageSize
            return try BoltBackend(path: path, options: options, fillPercent: config.fillPercent)
        case .lmdb:
            if fs.exists(path) { try fs.removeTree(path) }
            var options = LMDBOptions()
            options.noSync = config.noSync
            options.mapSize = 64 << 30
            return try LMDBBackend(path: path, options: options)
        }
    }

    /// Removes what `open` created.
    public func remove(base: String) {
        let fs = POSIXFileSystem()
        let path = dataPath(base: base)
        switch self {
        case .bolt: try? fs.remove(path)
        case .lmdb: try? fs.removeTree(path)
        }
    }
}
