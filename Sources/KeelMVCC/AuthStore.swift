import Foundation
import KeelBackend
import KeelIO
import KeelProto

/// Auth errors with etcd's messages (`auth/store.go`).
extension MVCCError {
    public static let rootUserNotExist = MVCCError.auth("root user does not exist")
    public static let rootRoleNotExist = MVCCError.auth("root user does not have root role")
    public static let userEmpty = MVCCError.auth("user name is empty")
    public static let userAlreadyExist = MVCCError.auth("user name already exists")
    public static let userNotFound = MVCCError.auth("user name not found")
    public static let roleEmpty = MVCCError.auth("role name is empty")
    public static let roleAlreadyExist = MVCCError.auth("role name already exists")
    public static let roleNotFound = MVCCError.auth("role name not found")
    public static let roleNotGranted = MVCCError.auth("role is not granted to the user")
    public static let permissionNotGranted = MVCCError.auth("permission is not granted to the role")
    public static let permissionDenied = MVCCError.auth("permission denied")
    public static let authFailed = MVCCError.auth("authentication failed, invalid user ID or password")
    public static let authNotEnabled = MVCCError.auth("authentication is not enabled")
    public static let invalidAuthToken = MVCCError.auth("invalid auth token")
    public static let invalidAuthManagement = MVCCError.auth("invalid auth management")
    public static let authOldRevision = MVCCError.auth("auth revision in header is old")
}

/// Who a request comes from, as the server learned it (a token or a certificate's CN).
public struct AuthInfo: Sendable, Equatable {
    public var user: String
    /// The auth revision the credential was issued at.
    public var revision: UInt64
    public init(user: String, revision: UInt64) {
        self.user = user
        self.revision = revision
    }
}

/// A simple token's holder and expiry.
struct SimpleToken {
    var info: AuthInfo
    var expiry: Double
}

/// etcd's auth store: users (bcrypt passwords), roles with key-range permissions, the root
/// rules, `authRevision`, permission checks for ranges and every op of a txn, and etcd's
/// simple tokens. Persisted in `auth`, `authUsers` and `authRoles` as etcd does.
extension KVStore {
    static let authBucket: BucketPath = [Array("auth".utf8)]
    static let authUsersBucket: BucketPath = [Array("authUsers".utf8)]
    static let authRolesBucket: BucketPath = [Array("authRoles".utf8)]
    static let authEnabledKey = Array("authEnabled".utf8)
    static let authRevisionKey = Array("authRevision".utf8)
    /// etcd's simple-token lifetime, 300 s, extended on each use.
    public static let simpleTokenTTL: Double = 300

    // MARK: State

    public var isAuthEnabled: Bool { withLock { authEnabled } }
    public var authRevision: UInt64 { withLock { authRev } }

    /// Creates the auth buckets when missing and loads the enabled flag and revision.
    func restoreAuth() throws(MVCCError) {
        let names = try backendCall { () throws(BackendError) -> [[UInt8]] in
            let read = try backend.beginRead()
            defer { read.end() }
            return try read.buckets(in: [])
        }
        let missing = [KVStore.authBucket, KVStore.authUsersBucket, KVStore.authRolesBucket].filter { !names.contains($0[0]) }
        if !missing.isEmpty {
            try backendCall { () throws(BackendError) in
                let tx = try backend.beginWrite()
                for bucket in missing { try tx.createBucket(bucket) }
                try tx.commit()
            }
        }
        try backendCall { () throws(BackendError) in
            let read = try backend.beginRead()
            defer { read.end() }
            let auth = try read.bucket(KVStore.authBucket)
            authEnabled = try auth.get(KVStore.authEnabledKey) == [1]
            authRev = try auth.get(KVStore.authRevisionKey).flatMap(bigEndianValue) ?? 0
        }
        if authRev == 0 { try commitAuthRevision() }
    }

    private func commitAuthRevision() throws(MVCCError) {
        authRev += 1
        let bytes = bigEndianBytes(authRev)
        try batch(changes: 1) { tx throws(BackendError) in try tx.bucket(KVStore.authBucket).put(KVStore.authRevisionKey, bytes) }
    }

    private func authMutation<T>(_ raftIndex: UInt64, _ body: () throws(MVCCError) -> T) throws(MVCCError) -> T {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            guard options.auth else { throw MVCCError.auth("auth is disabled in this store's options") }
            let result = try body()
            try saveConsistentIndex(raftIndex)
            return result
        }
    }

    private func getUser(_ name: String) throws(MVCCError) -> Authpb_User? {
        let bytes = try pendingOrStored(KVStore.authUsersBucket, Array(name.utf8))
        guard let bytes else { return nil }
        guard let user = try? Authpb_User(serializedBytes: bytes) else { throw MVCCError.corrupt("authUsers/\(name) is not an authpb.User") }
        return user
    }

    private func getRole(_ name: String) throws(MVCCError) -> Authpb_Role? {
        let bytes = try pendingOrStored(KVStore.authRolesBucket, Array(name.utf8))
        guard let bytes else { return nil }
        guard let role = try? Authpb_Role(serializedBytes: bytes) else { throw MVCCError.corrupt("authRoles/\(name) is not an authpb.Role") }
        return role
    }

    /// Auth records are read through the batch writer's transaction view (uncommitted writes
    /// included), since auth mutations read what earlier ones wrote.
    private func pendingOrStored(_ bucket: BucketPath, _ key: [UInt8]) throws(MVCCError) -> [UInt8]? {
        if let value = authPending[bucket[0] + [0] + key] { return value.isEmpty ? nil : value }
        return try backendCall { () throws(BackendError) in
            let read = try backend.beginRead()
            defer { read.end() }
            return try read.bucket(bucket).get(key)
        }
    }

    private func putRecord(_ bucket: BucketPath, _ key: [UInt8], _ value: [UInt8]?) throws(MVCCError) {
        try batch(changes: 1) { tx throws(BackendError) in
            if let value { try tx.bucket(bucket).put(key, value) } else { try tx.bucket(bucket).delete(key) }
        }
        authPending[bucket[0] + [0] + key] = value ?? []
        // The pending view is exact only until the batch commits; a commit makes the backend exact.
        if writer.counters.pending == 0 { authPending.removeAll() }
    }

    private func putUser(_ user: Authpb_User) throws(MVCCError) {
        try putRecord(KVStore.authUsersBucket, [UInt8](user.name), [UInt8](try! user.serializedBytes() as [UInt8]))
    }

    private func putRole(_ role: Authpb_Role) throws(MVCCError) {
        try putRecord(KVStore.authRolesBucket, [UInt8](role.name), [UInt8](try! role.serializedBytes() as [UInt8]))
    }

    /// The names in an auth bucket: the committed ones with this batch's pending changes laid
    /// over them. No commit is forced, so any thread may ask (LMDB ties the batch's write
    /// transaction to the driver thread).
    private func allNames(_ bucket: BucketPath) throws(MVCCError) -> [String] {
        var names = Set(try backendCall { () throws(BackendError) in
            let read = try backend.beginRead()
            defer { read.end() }
            return try read.bucket(bucket).entries().map(\.key)
        })
        let prefix = bucket[0] + [0]
        for (k, v) in authPending where k.starts(with: prefix) {
            let name = Array(k[prefix.count...])
            if v.isEmpty { names.remove(name) } else { names.insert(name) }
        }
        return names.sorted { compareBytes($0, $1) < 0 }.map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: Enable

    /// etcd's AuthEnable: needs user root with role root.
    public func authEnable(index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            if authEnabled { return }
            guard let root = try getUser("root") else { throw MVCCError.rootUserNotExist }
            guard root.roles.contains("root") else { throw MVCCError.rootRoleNotExist }
            try putRecord(KVStore.authBucket, KVStore.authEnabledKey, [1])
            authEnabled = true
            tokens.removeAll()
        }
    }

    /// etcd's AuthDisable.
    public func authDisable(index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            if !authEnabled { return }
            try putRecord(KVStore.authBucket, KVStore.authEnabledKey, [0])
            authEnabled = false
            tokens.removeAll()
            try commitAuthRevision()
        }
    }

    // MARK: Users

    /// etcd's UserAdd: bcrypt (cost 10) unless `noPassword`.
    public func userAdd(_ name: String, password: String, noPassword: Bool = false, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            if name.isEmpty { throw MVCCError.userEmpty }
            if try getUser(name) != nil { throw MVCCError.userAlreadyExist }
            var user = Authpb_User()
            user.name = Data(name.utf8)
            if noPassword {
                user.options.noPassword = true
            } else {
                user.password = Data(try hashPassword(password).utf8)
            }
            try putUser(user)
            try commitAuthRevision()
        }
    }

    /// etcd's UserDelete (root cannot be deleted while auth is on).
    public func userDelete(_ name: String, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            if authEnabled && name == "root" { throw MVCCError.invalidAuthManagement }
            guard try getUser(name) != nil else { throw MVCCError.userNotFound }
            try putRecord(KVStore.authUsersBucket, Array(name.utf8), nil)
            try commitAuthRevision()
            tokens = tokens.filter { $0.value.info.user != name }
        }
    }

    /// etcd's UserChangePassword.
    public func userChangePassword(_ name: String, password: String, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            guard var user = try getUser(name) else { throw MVCCError.userNotFound }
            user.password = Data(try hashPassword(password).utf8)
            try putUser(user)
            try commitAuthRevision()
            tokens = tokens.filter { $0.value.info.user != name }
        }
    }

    /// etcd's UserGrantRole: the role must exist unless it is root; granting twice is a no-op.
    public func userGrantRole(_ name: String, role: String, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            guard var user = try getUser(name) else { throw MVCCError.userNotFound }
            if role != "root", try getRole(role) == nil { throw MVCCError.roleNotFound }
            if user.roles.contains(role) { return }
            user.roles.append(role)
            user.roles.sort()
            try putUser(user)
            try commitAuthRevision()
        }
    }

    /// etcd's UserRevokeRole (root keeps root while auth is on).
    public func userRevokeRole(_ name: String, role: String, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            if authEnabled && name == "root" && role == "root" { throw MVCCError.invalidAuthManagement }
            guard var user = try getUser(name) else { throw MVCCError.userNotFound }
            guard let i = user.roles.firstIndex(of: role) else { throw MVCCError.roleNotGranted }
            user.roles.remove(at: i)
            try putUser(user)
            try commitAuthRevision()
        }
    }

    /// etcd's UserGet: the user's roles.
    public func userGet(_ name: String) throws(MVCCError) -> [String] {
        try withLock { () throws(MVCCError) in
            guard let user = try getUser(name) else { throw MVCCError.userNotFound }
            return user.roles
        }
    }

    /// etcd's UserList, sorted.
    public func userList() throws(MVCCError) -> [String] {
        try withLock { () throws(MVCCError) in try allNames(KVStore.authUsersBucket) }
    }

    // MARK: Roles

    public func roleAdd(_ name: String, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            if name.isEmpty { throw MVCCError.roleEmpty }
            if try getRole(name) != nil { throw MVCCError.roleAlreadyExist }
            var role = Authpb_Role()
            role.name = Data(name.utf8)
            try putRole(role)
            try commitAuthRevision()
        }
    }

    /// etcd's RoleDelete: also removes the role from every user.
    public func roleDelete(_ name: String, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            if authEnabled && name == "root" { throw MVCCError.invalidAuthManagement }
            guard try getRole(name) != nil else { throw MVCCError.roleNotFound }
            try putRecord(KVStore.authRolesBucket, Array(name.utf8), nil)
            for userName in try allNames(KVStore.authUsersBucket) {
                guard var user = try getUser(userName), let i = user.roles.firstIndex(of: name) else { continue }
                user.roles.remove(at: i)
                try putUser(user)
            }
            try commitAuthRevision()
        }
    }

    /// etcd's RoleGet: the role's permissions (root: read-write on every key).
    public func roleGet(_ name: String) throws(MVCCError) -> [Authpb_Permission] {
        try withLock { () throws(MVCCError) in
            if name == "root" {
                var all = Authpb_Permission()
                all.permType = .readwrite
                all.rangeEnd = Data([0])
                return [all]
            }
            guard let role = try getRole(name) else { throw MVCCError.roleNotFound }
            return role.keyPermission
        }
    }

    public func roleList() throws(MVCCError) -> [String] {
        try withLock { () throws(MVCCError) in try allNames(KVStore.authRolesBucket) }
    }

    /// etcd's RoleGrantPermission: kept sorted by key; the same key and range end replace the type.
    public func roleGrantPermission(_ name: String, _ permission: Authpb_Permission, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            guard var role = try getRole(name) else { throw MVCCError.roleNotFound }
            if let i = role.keyPermission.firstIndex(where: { $0.key == permission.key && $0.rangeEnd == permission.rangeEnd }) {
                role.keyPermission[i].permType = permission.permType
            } else {
                let i = role.keyPermission.firstIndex { compareBytes([UInt8]($0.key), [UInt8](permission.key)) > 0 } ?? role.keyPermission.count
                role.keyPermission.insert(permission, at: i)
            }
            try putRole(role)
            try commitAuthRevision()
        }
    }

    public func roleRevokePermission(_ name: String, key: [UInt8], rangeEnd: [UInt8], index raftIndex: UInt64 = 0) throws(MVCCError) {
        try authMutation(raftIndex) { () throws(MVCCError) in
            guard var role = try getRole(name) else { throw MVCCError.roleNotFound }
            guard let i = role.keyPermission.firstIndex(where: { [UInt8]($0.key) == key && [UInt8]($0.rangeEnd) == rangeEnd }) else {
                throw MVCCError.permissionNotGranted
            }
            role.keyPermission.remove(at: i)
            try putRole(role)
            try commitAuthRevision()
        }
    }

    // MARK: Authentication

    /// etcd's Authenticate with simple tokens: `<16 letters>.<index>`, living 300 s (renewed on use).
    public func authenticate(_ name: String, password: String, index raftIndex: UInt64) throws(MVCCError) -> String {
        try withLock { () throws(MVCCError) in
            guard authEnabled else { throw MVCCError.authNotEnabled }
            guard let user = try getUser(name), !user.options.noPassword,
                  BCrypt.check(password, hash: String(decoding: user.password, as: UTF8.self)) else { throw MVCCError.authFailed }
            let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
            var token = String((0..<16).map { _ in letters[Int.random(in: 0..<letters.count)] })
            token += ".\(raftIndex)"
            tokens[token] = SimpleToken(info: AuthInfo(user: name, revision: authRev), expiry: clockNow() + KVStore.simpleTokenTTL)
            return token
        }
    }

    /// etcd's `CheckPassword`, done before raft so the password never enters the log.
    public func checkPassword(_ name: String, password: String) throws(MVCCError) {
        let hash: String = try withLock { () throws(MVCCError) in
            guard authEnabled else { throw MVCCError.authNotEnabled }
            guard let user = try getUser(name), !user.options.noPassword else { throw MVCCError.authFailed }
            return String(decoding: user.password, as: UTF8.self)
        }
        // bcrypt is slow on purpose: outside the store's lock.
        guard BCrypt.check(password, hash: hash) else { throw MVCCError.authFailed }
    }

    /// etcd's token assignment when an Authenticate entry (carrying the token prefix chosen
    /// before raft, no password) is applied: the token is `<prefix>.<raft index>`.
    public func assignToken(prefix: String, user name: String, index raftIndex: UInt64) throws(MVCCError) -> String {
        try withLock { () throws(MVCCError) in
            guard authEnabled else { throw MVCCError.authNotEnabled }
            guard try getUser(name) != nil else { throw MVCCError.authFailed }
            let token = prefix + ".\(raftIndex)"
            tokens[token] = SimpleToken(info: AuthInfo(user: name, revision: authRev), expiry: clockNow() + KVStore.simpleTokenTTL)
            return token
        }
    }

    /// 16 random letters: the token prefix the server puts in an Authenticate entry.
    public static func tokenPrefix() -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return String((0..<16).map { _ in letters[Int.random(in: 0..<letters.count)] })
    }

    /// The user behind a token (renewing it), or `.invalidAuthToken`.
    public func authInfo(token: String) throws(MVCCError) -> AuthInfo {
        try withLock { () throws(MVCCError) in
            guard var t = tokens[token], t.expiry > clockNow() else {
                tokens[token] = nil
                throw MVCCError.invalidAuthToken
            }
            t.expiry = clockNow() + KVStore.simpleTokenTTL
            tokens[token] = t
            return t.info
        }
    }

    private func hashPassword(_ password: String) throws(MVCCError) -> String {
        do throws(IOError) { return try BCrypt.hash(password, cost: options.bcryptCost) } catch { throw MVCCError.backend(error.description) }
    }

    // MARK: Permission checks

    /// etcd's check for one key or range: nil when auth is off, the user is root, or the user's
    /// roles cover `[key, rangeEnd)` (one key when empty, every key from `key` on for "\0").
    public func checkPermission(_ info: AuthInfo?, key: [UInt8], rangeEnd: [UInt8], write: Bool) throws(MVCCError) {
        try withLock { () throws(MVCCError) in try checkPermissionLocked(info, key: key, rangeEnd: rangeEnd, write: write) }
    }

    private func checkPermissionLocked(_ info: AuthInfo?, key: [UInt8], rangeEnd: [UInt8], write: Bool) throws(MVCCError) {
        guard authEnabled else { return }
        guard let info, !info.user.isEmpty else { throw MVCCError.userEmpty }
        if info.revision < authRev { throw MVCCError.authOldRevision }
        guard let user = try getUser(info.user) else { throw MVCCError.permissionDenied }
        if user.roles.contains("root") { return }
        var intervals: [(begin: [UInt8], end: [UInt8]?)] = []   // end nil: infinity; a point when begin == end marker
        var points: [[UInt8]] = []
        for roleName in user.roles {
            guard let role = try getRole(roleName) else { continue }
            for p in role.keyPermission where p.permType == .readwrite || (write ? p.permType == .write : p.permType == .read) {
                if p.rangeEnd.isEmpty { points.append([UInt8](p.key)) } else {
                    intervals.append(([UInt8](p.key), p.rangeEnd == Data([0]) ? nil : [UInt8](p.rangeEnd)))
                }
            }
        }
        if rangeEnd.isEmpty {
            if points.contains(key) { return }
            if intervals.contains(where: { compareBytes($0.begin, key) <= 0 && ($0.end == nil || compareBytes(key, $0.end!) < 0) }) { return }
            throw MVCCError.permissionDenied
        }
        // A range must be covered by the union of the intervals.
        let end: [UInt8]? = rangeEnd == [0] ? nil : rangeEnd
        var covered = key
        for iv in intervals.sorted(by: { compareBytes($0.begin, $1.begin) < 0 }) where compareBytes(iv.begin, covered) <= 0 {
            guard let ivEnd = iv.end else { return }
            if compareBytes(ivEnd, covered) > 0 { covered = ivEnd }
            if let end, compareBytes(covered, end) >= 0 { return }
        }
        throw MVCCError.permissionDenied
    }

    /// etcd's `CheckTxnAuth`: read permission for every compare, and for each op of both
    /// branches (nested txns included) what it needs (a delete with prev_kv reads too).
    public func checkTxnPermission(_ info: AuthInfo?, _ t: Etcdserverpb_TxnRequest) throws(MVCCError) {
        try withLock { () throws(MVCCError) in try checkTxnPermissionLocked(info, t) }
    }

    private func checkTxnPermissionLocked(_ info: AuthInfo?, _ t: Etcdserverpb_TxnRequest) throws(MVCCError) {
        for c in t.compare { try checkPermissionLocked(info, key: [UInt8](c.key), rangeEnd: [UInt8](c.rangeEnd), write: false) }
        for op in t.success + t.failure {
            switch op.request {
            case let .requestRange(r)?:
                try checkPermissionLocked(info, key: [UInt8](r.key), rangeEnd: [UInt8](r.rangeEnd), write: false)
            case let .requestPut(p)?:
                try checkPermissionLocked(info, key: [UInt8](p.key), rangeEnd: [], write: true)
                if p.prevKv { try checkPermissionLocked(info, key: [UInt8](p.key), rangeEnd: [], write: false) }
            case let .requestDeleteRange(d)?:
                try checkPermissionLocked(info, key: [UInt8](d.key), rangeEnd: [UInt8](d.rangeEnd), write: true)
                if d.prevKv { try checkPermissionLocked(info, key: [UInt8](d.key), rangeEnd: [UInt8](d.rangeEnd), write: false) }
            case let .requestTxn(inner)?:
                try checkTxnPermissionLocked(info, inner)
            case nil:
                break
            }
        }
    }
}
