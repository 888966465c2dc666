/// A read-only view of file bytes in memory (an mmap, or a simulated file's buffer).
///
/// The region stays valid for as long as this object lives, even after the file handle that made
/// it is closed; readers hold a reference to the region they started on, so a writer can replace
/// the mapping without waiting for them. Touching bytes past the file's current end is undefined
/// (SIGBUS on a real mapping): callers bound every access by the file size they know.
public final class MappedRegion: @unchecked Sendable {
    /// The first mapped byte.
    public let base: UnsafeRawPointer
    /// The number of bytes of address space mapped (may exceed the file size).
    public let length: Int
    private let release: (@Sendable () -> Void)?

    /// Wraps memory; `release` runs once, when the region is freed.
    package init(base: UnsafeRawPointer, length: Int, release: (@Sendable () -> Void)?) {
        self.base = base
        self.length = length
        self.release = release
    }

    deinit { release?() }
}
