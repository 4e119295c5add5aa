import KnitClient

#if canImport(Glibc)
    import Glibc
#endif

/// Whether `path` is a directory, following symbolic links.
func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

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
