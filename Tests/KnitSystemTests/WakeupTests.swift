import Foundation
import KnitSystem
import Testing

private func socketPath() -> String {
    NSTemporaryDirectory() + "knit-wakeup-\(UUID().uuidString.prefix(8)).sock"
}

@Suite("Wakeup (unix datagram socket)")
struct WakeupTests {
    @Test("a ring wakes a waiter well before its timeout")
    func ringWakes() throws {
        let wakeup = try Wakeup(path: socketPath())
        let path = wakeup.path
        // A real thread, not a Task: `wait` blocks this thread, and with the whole suite running on 2 cores
        // no cooperative thread may be free to run a ringer task in time.
        let ringer = Thread {
            usleep(100_000)
            Wakeup.notify(path: path)
        }
        let clock = ContinuousClock()
        let began = clock.now
        ringer.start()
        #expect(wakeup.wait(timeout: .seconds(10)))
        #expect(clock.now - began < .seconds(3))
    }

    @Test("without a ring the wait times out; several rings count as one")
    func timeoutAndCoalescing() throws {
        let wakeup = try Wakeup(path: socketPath())
        let clock = ContinuousClock()
        let began = clock.now
        #expect(!wakeup.wait(timeout: .milliseconds(150)))
        #expect(clock.now - began >= .milliseconds(140))
        for _ in 0..<3 { #expect(Wakeup.notify(path: wakeup.path) == .delivered) }
        #expect(wakeup.wait(timeout: .seconds(1)))
        #expect(!wakeup.wait(timeout: .milliseconds(50)))
    }

    @Test("a scheduler that has not read its rings yet is reported busy, not absent")
    func busyReceiver() throws {
        let wakeup = try Wakeup(path: socketPath())
        var outcomes: [Wakeup.Ring] = []
        // The receive queue holds a bounded number of datagrams; ring until it is full, with a bound so a
        // kernel that never fills cannot hang the test.
        while outcomes.last != .receiverBusy && outcomes.count < 100_000 {
            outcomes.append(Wakeup.notify(path: wakeup.path))
        }
        #expect(outcomes.last == .receiverBusy)
        #expect(outcomes.dropLast().allSatisfy { $0 == .delivered })
        #expect(wakeup.wait(timeout: .seconds(1)))
        #expect(Wakeup.notify(path: wakeup.path) == .delivered)
    }

    @Test("the socket has mode 0660 and disappears with the Wakeup")
    func modeAndRemoval() throws {
        let path = socketPath()
        do {
            let wakeup = try Wakeup(path: path)
            let attributes = try FileManager.default.attributesOfItem(atPath: wakeup.path)
            #expect((attributes[.posixPermissions] as? Int) == 0o660)
            #expect((attributes[.type] as? FileAttributeType) == .typeSocket)
        }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("notify with nobody listening returns quietly and at once")
    func nobodyListening() throws {
        let clock = ContinuousClock()
        let began = clock.now
        #expect(!isDelivered(Wakeup.notify(path: socketPath())))  // no such file
        #expect(!isDelivered(Wakeup.notify(path: "")))  // not a usable path
        // too long for a socket address
        #expect(!isDelivered(Wakeup.notify(path: "/" + String(repeating: "x", count: 300))))
        // A socket file nobody is bound to any more (a second name of a socket that closed).
        let stale = socketPath()
        do {
            let wakeup = try Wakeup(path: socketPath())
            try FileManager.default.linkItem(atPath: wakeup.path, toPath: stale)
        }
        defer { try? FileManager.default.removeItem(atPath: stale) }
        #expect(FileManager.default.fileExists(atPath: stale))
        _ = FileManager.default.createFile(atPath: stale + ".txt", contents: nil)
        #expect(!isDelivered(Wakeup.notify(path: stale)))
        #expect(!isDelivered(Wakeup.notify(path: stale + ".txt")))  // a regular file
        try? FileManager.default.removeItem(atPath: stale + ".txt")
        #expect(clock.now - began < .seconds(1))
    }

    @Test("binding replaces a stale socket but refuses to replace a regular file")
    func binding() throws {
        let path = socketPath()
        var first: Wakeup? = try Wakeup(path: path)
        // A second scheduler (the first one hung or crashed) takes the path over.
        let second = try Wakeup(path: path)
        #expect(first != nil)
        // The old one going away leaves the new one's socket alone.
        first = nil
        Wakeup.notify(path: path)
        #expect(second.wait(timeout: .seconds(1)))

        let file = socketPath() + ".txt"
        _ = FileManager.default.createFile(atPath: file, contents: Data("keep".utf8))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let error = try #require(throws: WakeupError.self) { try Wakeup(path: file) }
        #expect(error.message.contains(file))
        #expect(FileManager.default.contents(atPath: file) == Data("keep".utf8))
    }
}

private func isDelivered(_ ring: Wakeup.Ring) -> Bool {
    if case .notDelivered = ring { return false }
    return true
}
