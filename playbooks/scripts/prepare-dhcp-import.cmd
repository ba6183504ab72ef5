@echo off
rem ===========================================================================
rem Prepares the DHCP configuration of old-sbs for import on new-sbs.
rem Reads C:\mig\dhcp\dhcp-old.txt (written on new-sbs by the step
rem dhcp-export-old with `netsh dhcp server \\old-sbs dump`; Windows 2000 has
rem no `netsh dhcp server export`, KB 885687) and writes
rem C:\mig\dhcp\dhcp-new.txt:
rem   - the commands address new-sbs (192.168.16.3) instead of old-sbs;
rem   - option 006 (DNS servers) gives new-sbs first and old-sbs second: both
rem     answer for acme.local until old-sbs is demoted (the step
rem     dhcp-dns-new-only then removes old-sbs).
rem Every other mention of 192.168.16.2 is listed for the operator, who
rem reviews the file in the step dhcp-review before anything is imported.
rem Runs directly: it only reads and writes files on new-sbs.
rem ===========================================================================
setlocal
set WORK=C:\mig\dhcp
if not exist "%WORK%\dhcp-old.txt" (
    echo %WORK%\dhcp-old.txt is missing: run the step dhcp-export-old first. 1>&2
    exit /b 1
)
rem [char]34 is a double quote: a literal one would end the cmd argument.
powershell -NoProfile -NonInteractive -Command "$q = [char]34; $t = Get-Content 'C:\mig\dhcp\dhcp-old.txt'; $t = $t -replace '^Dhcp Server (192\.168\.16\.2|\\\\old-sbs(\.acme\.local)?) ', 'Dhcp Server 192.168.16.3 '; $t = $t | ForEach-Object { if ($_ -match 'optionvalue 6 ') { $_ -replace ($q + '192\.168\.16\.2' + $q), ($q + '192.168.16.3' + $q + ' ' + $q + '192.168.16.2' + $q) } else { $_ } }; Set-Content -Path 'C:\mig\dhcp\dhcp-new.txt' -Value $t -Encoding ASCII"
if errorlevel 1 exit /b 1
echo Option 006 (DNS servers) in dhcp-new.txt:
findstr /i /c:"optionvalue 6 " "%WORK%\dhcp-new.txt"
echo Lines of dhcp-new.txt that still mention 192.168.16.2 (review them):
findstr /n /r /c:"192\.168\.16\.2[^0-9]" /c:"192\.168\.16\.2$" "%WORK%\dhcp-new.txt"
findstr /i /c:"add scope" "%WORK%\dhcp-new.txt" >nul
if errorlevel 1 (
    echo dhcp-new.txt defines no scope: the dump from old-sbs is empty or unreadable. 1>&2
    exit /b 1
)
exit /b 0
