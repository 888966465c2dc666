#if canImport(Glibc)
import Glibc
#endif
import CKeelShims

/// bcrypt password hashes through the system's libcrypt, in the `$2a$` form Go's bcrypt (and
/// so etcd's auth store) writes and reads.
public enum BCrypt {
    /// etcd's cost.
    public static let defaultCost = 10

    /// A new hash of `password` with a random salt.
    /// - Throws: `IOError.system` when libcrypt fails (no randomness, bad cost).
    public static func hash(_ password: String, cost: Int = defaultCost) throws(IOError) -> String {
        var out = [CChar](repeating: 0, count: 128)
        let rc = password.withCString { keel_bcrypt_hash($0, Int32(cost), &out, out.count) }
        guard rc == 0 else { throw IOError.system(operation: "crypt_gensalt/crypt_r (bcrypt)", path: "", errno: errno) }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `password` matches `hash`; false for a hash libcrypt cannot read.
    public static func check(_ password: String, hash: String) -> Bool {
        password.withCString { p in hash.withCString { h in keel_bcrypt_check(p, h) == 1 } }
    }
}
