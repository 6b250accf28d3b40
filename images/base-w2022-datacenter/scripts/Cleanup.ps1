# Clears temporary files and Windows Update leftovers before Sysprep to shrink
# the image. Idempotent: removing what is already gone is not an error.
$ErrorActionPreference = 'Stop'

$paths = @("$env:TEMP\*", "$env:SystemRoot\Temp\*", "$env:SystemRoot\SoftwareDistribution\Download\*")
foreach ($path in $paths) {
    if (Test-Path $path) {
        Remove-Item $path -Recurse -Force -ErrorAction SilentlyContinue
        Write-Output "Cleared $path"
    }
}

# Component store clean-up (superseded updates); skipped when nothing is pending.
$analysis = Dism.exe /Online /Cleanup-Image /AnalyzeComponentStore
if ($analysis -match 'Component Store Cleanup Recommended : Yes') {
    Dism.exe /Online /Cleanup-Image /StartComponentCleanup /ResetBase | Out-Null
    Write-Output 'Component store cleaned'
} else {
    Write-Output 'Component store clean-up not needed'
}

Clear-RecycleBin -Force -ErrorAction SilentlyContinue
