/// An etcdctl-style ASCII table (tablewriter with centred headers and, as etcdctl sets it,
/// right-aligned cells).
public struct Table {
    public var headers: [String]
    public var rows: [[String]]

    public init(headers: [String], rows: [[String]]) {
        self.headers = headers
        self.rows = rows
    }

    public func render() -> String {
        var widths = headers.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        let line = "+" + widths.map { String(repeating: "-", count: $0 + 2) + "+" }.joined()
        func center(_ s: String, _ w: Int) -> String {
            let left = (w - s.count) / 2
            return String(repeating: " ", count: left) + s + String(repeating: " ", count: w - s.count - left)
        }
        func right(_ s: String, _ w: Int) -> String { String(repeating: " ", count: w - s.count) + s }
        var out = [line, "|" + headers.enumerated().map { " " + center($0.element, widths[$0.offset]) + " |" }.joined(), line]
        for row in rows {
            out.append("|" + row.enumerated().map { cell in
                " " + right(cell.element, widths[cell.offset]) + " |"
            }.joined())
        }
        out.append(line)
        return out.joined(separator: "\n")
    }
}
