import KeelBolt

/// Draws a bbolt file's pages in order as a grid: colour by use, lightness by how full the page
/// is, so fragmentation and damage are visible at a glance.
public enum PageMapSVG {
    static let colors: [PageUse: (r: Int, g: Int, b: Int)] = [
        .meta: (128, 0, 128), .freelist: (230, 140, 0), .branch: (30, 90, 200), .leaf: (40, 160, 60),
        .overflow: (120, 200, 120), .free: (210, 210, 210), .unreachable: (220, 30, 30),
    ]

    /// The SVG document for `uses` (one entry per page, as `Tx.pageUses()` returns).
    public static func render(_ uses: [(use: PageUse, used: Int)], pageSize: Int, title: String) -> String {
        let columns = min(128, max(16, Int(Double(uses.count).squareRoot().rounded(.up))))
        let cell = uses.count > 4096 ? 6 : 12
        let rows = (uses.count + columns - 1) / columns
        let legendHeight = 70
        let width = max(columns * cell + 20, 640)
        let height = rows * cell + legendHeight + 30
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"monospace\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"10\" y=\"18\">\(escape(title)): \(uses.count) pages of \(pageSize) B</text>\n"
        for (i, page) in uses.enumerated() {
            let (r, g, b) = colors[page.use]!
            // Fuller pages are darker: blend toward white by the unused fraction.
            let fill = page.use == .free || page.use == .unreachable || page.use == .meta ? 1.0 : min(1.0, max(0.15, Double(page.used) / Double(pageSize)))
            func blend(_ c: Int) -> Int { Int(Double(c) * fill + 255 * (1 - fill)) }
            let x = 10 + (i % columns) * cell
            let y = 28 + (i / columns) * cell
            svg += "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" fill=\"rgb(\(blend(r)),\(blend(g)),\(blend(b)))\"><title>page \(i): \(page.use.rawValue), \(page.used) B used</title></rect>\n"
        }
        let y = 28 + rows * cell + 14
        for (k, use) in [PageUse.meta, .freelist, .branch, .leaf, .overflow, .free, .unreachable].enumerated() {
            let (r, g, b) = colors[use]!
            let count = uses.filter { $0.use == use }.count
            let x = 10 + (k % 4) * 155
            let ly = y + (k / 4) * 18
            svg += "<rect x=\"\(x)\" y=\"\(ly)\" width=\"12\" height=\"12\" fill=\"rgb(\(r),\(g),\(b))\"/>"
            svg += "<text x=\"\(x + 16)\" y=\"\(ly + 11)\">\(use.rawValue) \(count)</text>\n"
        }
        svg += "<text x=\"10\" y=\"\(y + 50)\">lighter = emptier page</text>\n</svg>\n"
        return svg
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

import Foundation
