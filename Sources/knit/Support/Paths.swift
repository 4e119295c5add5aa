import KnitClient

#if canImport(Glibc)
    import Glibc
#endif

/// The last component of `path`, as the directory `.` or `..` resolves to when it is one of those.
func baseName(_ path: String) -> String {
    let parts = path.split(separator: "/")
    guard let last = parts.last else { return "/" }
    if last == "." || last == ".." {
        let resolved = (try? ProfileResolution.currentDirectory()) ?? "/"
        return last == "." ? String(resolved.split(separator: "/").last ?? "/") : String(last)
    }
    return String(last)
}
