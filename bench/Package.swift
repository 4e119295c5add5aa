// swift-tools-version:6.0
// Benchmark helpers for Knit. A separate package so the product's manifest carries no benchmark code;
// it reaches the store through the root package's library products. Build from the repository root:
//     swift build -c release --package-path bench --scratch-path bench/.build-bench
import PackageDescription

let package = Package(
    name: "knit-bench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "knit", path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "knit-bench-store",
            dependencies: [
                .product(name: "KnitStore", package: "knit"),
                .product(name: "KnitCore", package: "knit"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("MemberImportVisibility")]
        )
    ]
)
