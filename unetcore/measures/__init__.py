"""The ISBI 2012 measures as the challenge computed them with Fiji (isbi), and the digital
topology they need (topology): they score any tool's probability map, not only ours."""
